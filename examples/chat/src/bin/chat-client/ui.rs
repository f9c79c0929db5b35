//! The interactive screen (ratatui over crossterm):
//!
//! ```text
//! ┌channels──────────┐┌#rust───────────────────────────────────────┐
//! │› #lobby          ││12:01 alice: hi ☺                            │
//! │  #rust       (3) ││12:02 bob: hello                             │
//! │  @carol      (1) ││-- alice joined #rust                        │
//! └──────────────────┘└─────────────────────────────────────────────┘
//!  ● online  bob · tcp://127.0.0.1:7000 · 2 online: alice, carol · :) on    status line
//! > typed text stays here while messages arrive_                           input line
//! ```
//!
//! Keys: Enter sends, Tab / Shift-Tab (or Ctrl-N / Ctrl-P) switch channel,
//! Alt-1..9 picks one, PageUp / PageDown scroll, F2 toggles emoticons, Esc
//! clears notices, Up / Down recall input, Ctrl-C quits. The terminal is
//! restored on every exit path: normal return, error, and panic (ratatui's
//! panic hook plus a drop guard).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::crossterm::event::{
    self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers,
};
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, Paragraph};
use tokio::sync::mpsc;

use crate::app::commands::{self, Command};
use crate::app::{Client, ConnState, Event, Source};
use crate::net::NetEvent;

/// Notices kept below the messages (errors, command results, /help).
const MAX_NOTICES: usize = 200;
/// Width of the channel list.
const CHANNELS_WIDTH: u16 = 22;
/// Time to let acks and sends finish after /quit.
const QUIT_GRACE: Duration = Duration::from_secs(2);

/// The line being typed, with its cursor (in chars) and recall history.
#[derive(Debug, Default)]
pub(crate) struct Input {
    text: String,
    cursor: usize,
    recall: Vec<String>,
    recall_at: Option<usize>,
}

impl Input {
    fn byte_at(&self, char_index: usize) -> usize {
        self.text
            .char_indices()
            .nth(char_index)
            .map_or(self.text.len(), |(i, _)| i)
    }

    fn len(&self) -> usize {
        self.text.chars().count()
    }

    pub(crate) fn insert(&mut self, c: char) {
        let at = self.byte_at(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    fn delete(&mut self) {
        if self.cursor < self.len() {
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    fn take(&mut self) -> String {
        self.cursor = 0;
        self.recall_at = None;
        let line = std::mem::take(&mut self.text);
        if !line.trim().is_empty() && !line.starts_with("/login ") {
            self.recall.push(line.clone());
        }
        line
    }

    fn recall(&mut self, older: bool) {
        if self.recall.is_empty() {
            return;
        }
        let at = match (self.recall_at, older) {
            (None, true) => self.recall.len() - 1,
            (None, false) => return,
            (Some(i), true) => i.saturating_sub(1),
            (Some(i), false) if i + 1 >= self.recall.len() => {
                self.recall_at = None;
                self.text.clear();
                self.cursor = 0;
                return;
            }
            (Some(i), false) => i + 1,
        };
        self.recall_at = Some(at);
        self.text = self.recall[at].clone();
        self.cursor = self.len();
    }

    /// What is shown: a password after `/login ` is masked.
    fn shown(&self) -> String {
        match self.text.strip_prefix("/login ") {
            Some(secret) => format!("/login {}", "*".repeat(secret.chars().count())),
            None => self.text.clone(),
        }
    }
}

/// What a key asks the client to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Line(String),
    Command(Command),
    Pick(usize),
    Quit,
}

/// Screen state that is not the client's: input, notices, scroll.
#[derive(Debug, Default)]
pub(crate) struct Ui {
    pub(crate) input: Input,
    notices: VecDeque<String>,
    /// Lines scrolled back from the bottom of the message pane.
    scroll: usize,
    /// Height of the message pane at the last draw, for paging.
    page: usize,
}

impl Ui {
    fn notice(&mut self, text: impl Into<String>) {
        self.notices.push_back(text.into());
        while self.notices.len() > MAX_NOTICES {
            self.notices.pop_front();
        }
    }

    /// Turn the client's events into notices (messages are drawn from the
    /// client's state; the connection is in the status line).
    pub(crate) fn note(&mut self, event: &Event, client: &Client) {
        match event {
            Event::Error {
                command, message, ..
            } => match command {
                Some(c) => self.notice(format!("error ({c}): {message}")),
                None => self.notice(format!("error: {message}")),
            },
            Event::Ok { command, detail } => {
                let mut line = format!("{command}: ok");
                if let Some(groups) = detail.get("groups").and_then(|g| g.as_array()) {
                    let names: Vec<String> = groups
                        .iter()
                        .map(|g| {
                            format!("{} ({})", g["name"].as_str().unwrap_or("?"), g["members"])
                        })
                        .collect();
                    line = format!(
                        "{command}: {}",
                        if names.is_empty() {
                            "no groups found".into()
                        } else {
                            names.join(", ")
                        }
                    );
                } else if let Some(members) = detail.get("members").and_then(|m| m.as_array()) {
                    let names: Vec<String> = members
                        .iter()
                        .map(|m| {
                            format!(
                                "{} ({}{})",
                                m["name"].as_str().unwrap_or("?"),
                                m["role"].as_str().unwrap_or("?"),
                                if m["online"] == true { ", online" } else { "" }
                            )
                        })
                        .collect();
                    line = format!("{command}: {}", names.join(", "));
                }
                self.notice(line);
            }
            Event::Help { lines } => {
                self.notice("commands:");
                for l in lines {
                    self.notice(format!("  {l}"));
                }
            }
            Event::Who { online, friends } => {
                self.notice(format!("online: {}", online.join(", ")));
                let f: Vec<String> = friends
                    .iter()
                    .map(|f| format!("{}{}", f.name, if f.online { " ●" } else { "" }))
                    .collect();
                self.notice(format!(
                    "friends: {}",
                    if f.is_empty() {
                        "none yet (/friend add <user>)".into()
                    } else {
                        f.join(", ")
                    }
                ));
            }
            Event::Channels { channels, .. } => {
                let list: Vec<String> = channels
                    .iter()
                    .map(|c| format!("{} ({} unread)", c.channel, c.unread))
                    .collect();
                self.notice(format!("channels: {}", list.join(", ")));
            }
            Event::History {
                source: Source::Local,
                messages,
                channel,
            } => {
                self.notice(format!(
                    "{channel}: {} messages stored locally",
                    messages.len()
                ));
            }
            Event::History {
                messages, channel, ..
            } => {
                self.notice(format!(
                    "{channel}: {} older messages from the server",
                    messages.len()
                ));
            }
            Event::Group {
                group,
                user,
                action,
            } if client.current() == format!("#{group}") || *user == client.me() => {
                self.notice(format!("{user} {action} #{group}"));
            }
            Event::Session { state } => self.notice(format!(
                "session {state}: the server signed this login out; /login <password> to log in again"
            )),
            Event::Emoticons { on } => {
                self.notice(format!("emoticons {}", if *on { "on" } else { "off" }))
            }
            Event::Login {
                name,
                number,
                resumed,
            } => {
                self.notice(format!(
                    "logged in as {name} (#{number}){}",
                    if *resumed { ", session resumed" } else { "" }
                ));
            }
            Event::Channel { .. } => self.scroll = 0,
            _ => {}
        }
    }

    /// A terminal event; what the client should do, if anything.
    pub(crate) fn on_event(&mut self, event: &TermEvent) -> Option<Action> {
        let TermEvent::Key(key) = event else {
            return None; // resize and others: the next draw adapts
        };
        if key.kind == KeyEventKind::Release {
            return None;
        }
        self.on_key(*key)
    }

    fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char('c') if ctrl => return Some(Action::Quit),
            KeyCode::Char('d') if ctrl && self.input.text.is_empty() => return Some(Action::Quit),
            KeyCode::Char('n') if ctrl => return Some(Action::Command(Command::Next)),
            KeyCode::Char('p') if ctrl => return Some(Action::Command(Command::Prev)),
            KeyCode::Char('a') if ctrl => self.input.cursor = 0,
            KeyCode::Char('e') if ctrl => self.input.cursor = self.input.len(),
            KeyCode::Char('u') if ctrl => {
                self.input.text.clear();
                self.input.cursor = 0;
            }
            KeyCode::Char(d @ '1'..='9') if alt => {
                return Some(Action::Pick(usize::from(d as u8 - b'1')));
            }
            KeyCode::Char(c) if !ctrl => self.input.insert(c),
            KeyCode::Tab => return Some(Action::Command(Command::Next)),
            KeyCode::BackTab => return Some(Action::Command(Command::Prev)),
            KeyCode::F(2) => return Some(Action::Command(Command::Emoticons(None))),
            KeyCode::Enter => {
                let line = self.input.take();
                self.scroll = 0;
                return (!line.trim().is_empty()).then_some(Action::Line(line));
            }
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Left => self.input.cursor = self.input.cursor.saturating_sub(1),
            KeyCode::Right => self.input.cursor = (self.input.cursor + 1).min(self.input.len()),
            KeyCode::Home => self.input.cursor = 0,
            KeyCode::End => self.input.cursor = self.input.len(),
            KeyCode::Up => self.input.recall(true),
            KeyCode::Down => self.input.recall(false),
            KeyCode::PageUp => self.scroll += self.page.max(2) - 1,
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(self.page.max(2) - 1),
            KeyCode::Esc => self.notices.clear(),
            _ => {}
        }
        None
    }
}

/// Display width of `s` in terminal cells.
fn width(s: &str) -> usize {
    Span::raw(s).width()
}

/// `text` cut into pieces of at most `max` cells.
fn wrap(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut out = Vec::new();
    for line in text.split('\n') {
        let mut piece = String::new();
        let mut used = 0;
        for c in line.chars() {
            let c = if c.is_control() { ' ' } else { c };
            let mut buf = [0u8; 4];
            let w = width(c.encode_utf8(&mut buf));
            if used + w > max && !piece.is_empty() {
                out.push(std::mem::take(&mut piece));
                used = 0;
            }
            piece.push(c);
            used += w;
        }
        out.push(piece);
    }
    out
}

/// `HH:MM` (UTC) of a timestamp in milliseconds.
fn clock(ts: u64) -> String {
    let minutes = (ts / 60_000) % (24 * 60);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Draw the whole screen.
pub(crate) fn draw(frame: &mut Frame<'_>, client: &Client, ui: &mut Ui) {
    let [main, status, input] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let channels_width = CHANNELS_WIDTH.min(main.width / 3);
    let [list, pane] =
        Layout::horizontal([Constraint::Length(channels_width), Constraint::Min(10)]).areas(main);
    draw_channels(frame, client, list);
    draw_messages(frame, client, ui, pane);
    draw_status(frame, client, status);
    draw_input(frame, ui, input);
}

fn draw_channels(frame: &mut Frame<'_>, client: &Client, area: Rect) {
    let inner_width = usize::from(area.width.saturating_sub(2));
    let items: Vec<ListItem<'_>> = client
        .channel_list()
        .into_iter()
        .map(|(key, unread)| {
            let current = key == client.current();
            let marker = if current { "›" } else { " " };
            let count = if unread > 0 {
                format!("({unread})")
            } else {
                String::new()
            };
            let name_room = inner_width.saturating_sub(width(&count) + 2);
            let name: String = if width(key) > name_room {
                key.chars()
                    .take(name_room.saturating_sub(1))
                    .chain(['…'])
                    .collect()
            } else {
                key.to_owned()
            };
            let pad = inner_width.saturating_sub(2 + width(&name) + width(&count));
            let mut style = Style::default();
            if current {
                style = style.add_modifier(Modifier::REVERSED);
            } else if unread > 0 {
                style = style.add_modifier(Modifier::BOLD);
            }
            ListItem::new(Line::from(vec![
                Span::styled(format!("{marker} {name}{}", " ".repeat(pad)), style),
                Span::styled(count, style.fg(Color::Yellow)),
            ]))
        })
        .collect();
    frame.render_widget(
        List::new(items).block(Block::default().borders(Borders::ALL).title("channels")),
        area,
    );
}

fn draw_messages(frame: &mut Frame<'_>, client: &Client, ui: &mut Ui, area: Rect) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(client.current().to_owned());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let (w, h) = (usize::from(inner.width), usize::from(inner.height));
    ui.page = h;
    if w == 0 || h == 0 {
        return;
    }
    let me = client.me();
    let mut lines: Vec<Line<'_>> = Vec::new();
    let mut add = |text: String, style: Style| {
        for piece in wrap(&text, w) {
            lines.push(Line::styled(piece, style));
        }
    };
    for m in client.current_messages() {
        let private = if m.to.group.is_some() && m.to.user.is_some() {
            format!(" → {} (private)", m.to.user.as_deref().unwrap_or_default())
        } else {
            String::new()
        };
        let style = if m.from == me {
            Style::default().fg(Color::Cyan)
        } else {
            Style::default()
        };
        add(
            format!(
                "{} {}{private}: {}",
                clock(m.ts),
                m.from,
                client.display(&m.text)
            ),
            style,
        );
    }
    for o in client.current_outgoing() {
        add(
            format!("  …   {me}: {}", client.display(&o.text)),
            Style::default().add_modifier(Modifier::DIM),
        );
    }
    for n in &ui.notices {
        add(format!("-- {n}"), Style::default().fg(Color::Yellow));
    }
    let max_scroll = lines.len().saturating_sub(h);
    ui.scroll = ui.scroll.min(max_scroll);
    let end = lines.len() - ui.scroll;
    let start = end.saturating_sub(h);
    let visible: Vec<Line<'_>> = lines.drain(start..end).collect();
    // Anchored at the bottom, next to the input line, like a chat.
    let shown = u16::try_from(visible.len())
        .unwrap_or(inner.height)
        .min(inner.height);
    let area = Rect {
        y: inner.y + inner.height - shown,
        height: shown,
        ..inner
    };
    frame.render_widget(Paragraph::new(visible), area);
}

fn draw_status(frame: &mut Frame<'_>, client: &Client, area: Rect) {
    let state = client.conn();
    let (dot, color) = match state {
        ConnState::Online => ("●", Color::Green),
        ConnState::Connecting | ConnState::LoggingIn => ("◌", Color::Yellow),
        _ => ("○", Color::Red),
    };
    let mut conn = format!("{dot} {}", state.label());
    if state != ConnState::Online
        && let Some(d) = client.conn_detail()
    {
        conn.push_str(&format!(" ({d})"));
    }
    let others: Vec<&str> = client
        .online_users()
        .filter(|u| *u != client.me())
        .collect();
    let online = match others.len() {
        0 => "nobody else online".to_owned(),
        n => format!("{n} online: {}", others.join(", ")),
    };
    let line = Line::from(vec![
        Span::styled(
            conn,
            Style::default().fg(color).add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "  {} · {} · {} · :) {} · /help",
            client.me(),
            client.server(),
            online,
            if client.emoticons() { "on" } else { "off" }
        )),
    ]);
    frame.render_widget(
        Paragraph::new(line).style(Style::default().add_modifier(Modifier::REVERSED)),
        area,
    );
}

fn draw_input(frame: &mut Frame<'_>, ui: &Ui, area: Rect) {
    const PROMPT: &str = "> ";
    let shown = ui.input.shown();
    let before: String = shown.chars().take(ui.input.cursor).collect();
    let room = usize::from(area.width)
        .saturating_sub(width(PROMPT) + 1)
        .max(1);
    // Scroll the line horizontally so that the cursor stays visible.
    let mut skip = 0;
    while width(&before.chars().skip(skip).collect::<String>()) > room {
        skip += 1;
    }
    let visible: String = shown.chars().skip(skip).collect();
    let cursor_x = width(PROMPT) + width(&before.chars().skip(skip).collect::<String>());
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(PROMPT, Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(visible),
        ])),
        area,
    );
    let x = area
        .x
        .saturating_add(u16::try_from(cursor_x).unwrap_or(u16::MAX))
        .min(area.right().saturating_sub(1));
    frame.set_cursor_position(Position::new(x, area.y));
}

/// Restores the terminal when dropped, whatever the way out.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Run the interactive screen until /quit or Ctrl-C.
pub(crate) async fn run(
    client: &mut Client,
    net: &mut mpsc::UnboundedReceiver<NetEvent>,
) -> io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let _restore = Restore;
    let stop = Arc::new(AtomicBool::new(false));
    let (key_tx, mut keys) = mpsc::unbounded_channel();
    let reader_stop = stop.clone();
    std::thread::spawn(move || {
        while !reader_stop.load(Ordering::Relaxed) {
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => match event::read() {
                    Ok(ev) => {
                        if key_tx.send(ev).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                },
                Ok(false) => {}
                Err(_) => break,
            }
        }
    });
    let mut ui = Ui::default();
    ui.notice("type /help for commands; Tab switches channel; Ctrl-C quits");
    let mut quitting: Option<Instant> = None;
    let result = loop {
        for e in client.take_events() {
            ui.note(&e, client);
        }
        if let Err(e) = terminal.draw(|f| draw(f, client, &mut ui)) {
            break Err(e);
        }
        if client.quit_requested() && quitting.is_none() {
            client.begin_close().await;
            quitting = Some(Instant::now());
        }
        if let Some(since) = quitting
            && (client.settled() || since.elapsed() >= QUIT_GRACE)
        {
            break Ok(());
        }
        let deadline = client
            .next_deadline()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let wake = quitting.map_or(deadline, |_| {
            deadline.min(Instant::now() + Duration::from_millis(100))
        });
        tokio::select! {
            key = keys.recv() => match key {
                Some(ev) => match ui.on_event(&ev) {
                    Some(Action::Quit) => client.on_command(Command::Quit).await,
                    Some(Action::Line(line)) => match commands::parse(&line) {
                        Ok(Some(cmd)) => client.on_command(cmd).await,
                        Ok(None) => {}
                        Err(e) => client.on_parse_error(e.0),
                    },
                    Some(Action::Command(cmd)) => client.on_command(cmd).await,
                    Some(Action::Pick(i)) => {
                        let key = client.channel_list().get(i).map(|(k, _)| (*k).to_owned());
                        if let Some(key) = key {
                            client.select(&key).await;
                        }
                    }
                    None => {}
                },
                None => break Ok(()), // the terminal is gone
            },
            ev = net.recv() => match ev {
                Some(ev) => client.on_net(ev).await,
                None => break Ok(()),
            },
            () = tokio::time::sleep_until(wake.into()) => client.on_tick().await,
        }
    };
    stop.store(true, Ordering::Relaxed);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::tests::{logged_in, push};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use serde_json::json;

    fn type_text(ui: &mut Ui, text: &str) {
        for c in text.chars() {
            assert_eq!(
                ui.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)),
                None
            );
        }
    }

    fn row(terminal: &Terminal<TestBackend>, y: u16) -> String {
        let buf = terminal.backend().buffer();
        (0..buf.area.width)
            .map(|x| buf[(x, y)].symbol().to_owned())
            .collect::<String>()
    }

    fn screen(terminal: &Terminal<TestBackend>) -> String {
        (0..terminal.backend().buffer().area.height)
            .map(|y| row(terminal, y))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn layout_and_input_that_survives_incoming_messages() {
        let (mut client, _net) = logged_in().await;
        let mut ui = Ui::default();
        let mut terminal = Terminal::new(TestBackend::new(80, 12)).unwrap();
        type_text(&mut ui, "half-typed reply");
        terminal.draw(|f| draw(f, &client, &mut ui)).unwrap();
        let before = terminal.get_cursor_position().unwrap();
        assert_eq!(row(&terminal, 11).trim_end(), "> half-typed reply");
        assert_eq!(
            (before.x, before.y),
            (18, 11),
            "the cursor sits after the typed text"
        );
        assert!(
            row(&terminal, 10).contains("● online"),
            "status line: {}",
            row(&terminal, 10)
        );
        assert!(row(&terminal, 10).contains("bob"));
        assert!(
            row(&terminal, 1).contains("› #lobby"),
            "{}",
            screen(&terminal)
        );

        // Messages arrive: in the current channel and elsewhere.
        client
            .on_net(push("m1", "alice", json!({"group": "lobby"}), "hello :)"))
            .await;
        client
            .on_net(push("m2", "carol", json!({"user": "bob"}), "psst"))
            .await;
        for e in client.take_events() {
            ui.note(&e, &client);
        }
        terminal.draw(|f| draw(f, &client, &mut ui)).unwrap();
        let text = screen(&terminal);
        assert!(text.contains("alice: hello ☺"), "{text}");
        assert!(
            !text.contains("psst"),
            "another channel's message is not in the pane"
        );
        assert!(
            row(&terminal, 2).contains("@carol") && row(&terminal, 2).contains("(1)"),
            "{text}"
        );
        assert_eq!(
            row(&terminal, 11).trim_end(),
            "> half-typed reply",
            "the input is untouched"
        );
        let after = terminal.get_cursor_position().unwrap();
        assert_eq!(after, before, "the cursor did not move");

        // Editing goes on where it was; Enter hands the line over.
        ui.on_key(KeyEvent::new(KeyCode::Left, KeyModifiers::NONE));
        ui.on_key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE));
        assert_eq!(ui.input.text, "half-typed repy");
        let action = ui.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        assert_eq!(action, Some(Action::Line("half-typed repy".into())));
        assert!(ui.input.text.is_empty());
    }

    #[tokio::test]
    async fn emoticons_toggle_and_channel_switching_keys() {
        let (mut client, _net) = logged_in().await;
        let mut ui = Ui::default();
        client
            .on_net(push("m1", "alice", json!({"group": "lobby"}), "I <3 it"))
            .await;
        client
            .on_net(push("m2", "carol", json!({"user": "bob"}), ":shrug:"))
            .await;
        let mut terminal = Terminal::new(TestBackend::new(70, 10)).unwrap();
        terminal.draw(|f| draw(f, &client, &mut ui)).unwrap();
        assert!(screen(&terminal).contains("alice: I ♥ it"));

        let toggle = ui
            .on_key(KeyEvent::new(KeyCode::F(2), KeyModifiers::NONE))
            .unwrap();
        let Action::Command(cmd) = toggle else {
            panic!("F2 is a command")
        };
        client.on_command(cmd).await;
        terminal.draw(|f| draw(f, &client, &mut ui)).unwrap();
        assert!(
            screen(&terminal).contains("alice: I <3 it"),
            "{}",
            screen(&terminal)
        );

        let Some(Action::Command(next)) =
            ui.on_key(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE))
        else {
            panic!("Tab switches")
        };
        client.on_command(next).await;
        terminal.draw(|f| draw(f, &client, &mut ui)).unwrap();
        assert_eq!(client.current(), "@carol");
        assert!(screen(&terminal).contains("carol: :shrug:"));
        assert_eq!(
            ui.on_key(KeyEvent::new(KeyCode::Char('1'), KeyModifiers::ALT)),
            Some(Action::Pick(0))
        );
    }

    #[test]
    fn long_lines_wrap_by_display_width() {
        assert_eq!(wrap("abcdef", 4), ["abcd", "ef"]);
        assert_eq!(
            wrap("ＡＢＣ", 4),
            ["ＡＢ", "Ｃ"],
            "wide characters take two cells"
        );
        assert_eq!(wrap("a\nb", 10), ["a", "b"]);
        assert_eq!(clock(3_600_000 + 61_000), "01:01");
    }

    #[test]
    fn a_password_is_masked_and_not_recalled() {
        let mut ui = Ui::default();
        type_text(&mut ui, "/login s3cret");
        assert_eq!(ui.input.shown(), "/login ******");
        ui.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        ui.on_key(KeyEvent::new(KeyCode::Up, KeyModifiers::NONE));
        assert_eq!(ui.input.text, "");
    }
}

//! The web client (`examples/chat/web`), built into the binary so a copied,
//! installed or containerised `chat-server` serves it with nothing beside it.
//! `--web-dir` serves a directory instead, for people who edit the UI.

use include_dir::{Dir, include_dir};

static WEB: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/web");

/// Every file of the web client: its path relative to `web/` (with `/`
/// separators) and its contents.
pub(crate) fn files() -> Vec<(String, &'static [u8])> {
    let mut out = Vec::new();
    let mut dirs = vec![&WEB];
    while let Some(dir) = dirs.pop() {
        for file in dir.files() {
            let path: Vec<_> = file.path().iter().map(|s| s.to_string_lossy()).collect();
            out.push((path.join("/"), file.contents()));
        }
        dirs.extend(dir.dirs());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_file_of_the_web_directory_is_built_in() {
        let built_in = super::files();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/web");
        let mut on_disk = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let bytes = std::fs::read(entry.path()).unwrap();
            let found = built_in.iter().find(|(p, _)| *p == name);
            assert_eq!(found.map(|(_, b)| *b), Some(&bytes[..]), "{name}");
            on_disk += 1;
        }
        assert_eq!(built_in.len(), on_disk);
        assert!(built_in.iter().any(|(p, _)| p == "index.html"));
    }
}

//! Shared by the protocol targets: feed the input to a fresh decoder in
//! chunks cut where its first bytes say, as reads from a socket would be;
//! any result but a panic or unbounded buffering is fine.

use bytes::BytesMut;
use homer::{Limits, MakeProtocol, Protocol};

pub fn fuzz_protocol<M: MakeProtocol>(make: M, data: &[u8]) {
    let limits = Limits::default();
    let mut p = make.make(&limits);
    let (cuts, data) = data.split_at(data.len().min(4));
    let mut buf = BytesMut::new();
    let mut at = 0;
    let mut steps = cuts.iter().map(|&c| usize::from(c) + 1).chain(std::iter::repeat(data.len()));
    while at < data.len() {
        let end = (at + steps.next().unwrap_or(data.len())).min(data.len());
        buf.extend_from_slice(&data[at..end]);
        at = end;
        loop {
            match p.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // Between frames a decoder holds at most a frame and a header.
        assert!(buf.len() <= limits.max_frame_size() + 64, "{} bytes buffered", buf.len());
    }
    for _ in 0..1000 {
        match p.decode_eof(&mut buf) {
            Ok(Some(_)) => {}
            _ => return,
        }
    }
    panic!("decode_eof never ends");
}

//! How one item is stored: a format byte and a CRC-32 of the payload, so a
//! damaged entry is reported instead of handed out.
//!
//! ```text
//! +--------+-------------------+------------------------+
//! | 0x01   | crc32(payload)    | payload                |
//! | 1 byte | 4 bytes, BE       | 0 .. max_item_size     |
//! +--------+-------------------+------------------------+
//! ```
//!
//! The CRC is CRC-32/ISO-HDLC (the zlib and Ethernet one).

/// The format byte of the only frame version.
const FORMAT: u8 = 1;

/// Bytes added in front of every payload.
pub(crate) const HEADER: usize = 5;

/// The stored form of `payload`.
pub(crate) fn encode(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + payload.len());
    v.push(FORMAT);
    v.extend_from_slice(&crc32(payload).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// The payload of a stored frame, or why it is not a valid frame.
pub(crate) fn decode(frame: &[u8]) -> Result<&[u8], String> {
    let [format, a, b, c, d, payload @ ..] = frame else {
        return Err(format!(
            "entry of {} bytes is shorter than the {HEADER}-byte header",
            frame.len()
        ));
    };
    if *format != FORMAT {
        return Err(format!("unknown item format {format}, expected {FORMAT}"));
    }
    let stored = u32::from_be_bytes([*a, *b, *c, *d]);
    let actual = crc32(payload);
    if stored != actual {
        return Err(format!(
            "checksum mismatch: stored {stored:#010x}, computed {actual:#010x} over {} bytes",
            payload.len()
        ));
    }
    Ok(payload)
}

/// Slicing-by-8 tables: `TABLES[0]` is the classic byte table; `TABLES[k]`
/// advances a byte that is followed by `k` more bytes.
const TABLES: [[u32; 256]; 8] = {
    let mut tables = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        tables[0][i] = c;
        i += 1;
    }
    let mut t = 1;
    while t < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = tables[t - 1][i];
            tables[t][i] = (prev >> 8) ^ tables[0][(prev & 0xFF) as usize];
            i += 1;
        }
        t += 1;
    }
    tables
};

fn crc32(bytes: &[u8]) -> u32 {
    let t = &TABLES;
    let mut c = !0u32;
    let mut chunks = bytes.chunks_exact(8);
    for b in &mut chunks {
        let lo = c ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let hi = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        c = t[7][(lo & 0xFF) as usize]
            ^ t[6][((lo >> 8) & 0xFF) as usize]
            ^ t[5][((lo >> 16) & 0xFF) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xFF) as usize]
            ^ t[2][((hi >> 8) & 0xFF) as usize]
            ^ t[1][((hi >> 16) & 0xFF) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        c = t[0][((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn sliced_crc_matches_the_bytewise_definition() {
        fn bytewise(bytes: &[u8]) -> u32 {
            let mut c = !0u32;
            for &b in bytes {
                c ^= u32::from(b);
                for _ in 0..8 {
                    c = if c & 1 == 1 {
                        0xEDB8_8320 ^ (c >> 1)
                    } else {
                        c >> 1
                    };
                }
            }
            !c
        }
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 100, 300] {
            assert_eq!(crc32(&data[..len]), bytewise(&data[..len]), "length {len}");
        }
    }

    #[test]
    fn frames_round_trip() {
        for payload in [&b""[..], b"x", b"hello world", &[0u8; 1000]] {
            assert_eq!(decode(&encode(payload)), Ok(payload));
        }
    }

    fn check(frame: &[u8], expected: &str) {
        assert_eq!(decode(frame), Err(expected.to_owned()));
    }

    #[test]
    fn damaged_frames_are_rejected_with_a_reason() {
        check(b"", "entry of 0 bytes is shorter than the 5-byte header");
        check(
            b"\x01abc",
            "entry of 4 bytes is shorter than the 5-byte header",
        );
        let mut wrong_format = encode(b"hi");
        wrong_format[0] = 9;
        check(&wrong_format, "unknown item format 9, expected 1");
        let mut flipped = encode(b"hi");
        flipped[6] ^= 1;
        check(
            &flipped,
            "checksum mismatch: stored 0xd8932aac, computed 0xaf941a3a over 2 bytes",
        );
    }
}

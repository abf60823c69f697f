//! The last bytes of a stream, in bounded memory.

/// Keeps the last `cap` bytes pushed into it, however many there were.
///
/// Memory stays below `2 * cap` at every moment, whatever the chunk sizes.
#[derive(Debug)]
pub(super) struct Tail {
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Tail {
    /// An empty tail that keeps `cap` bytes.
    pub(super) fn new(cap: usize) -> Tail {
        Tail {
            buf: Vec::with_capacity(cap),
            cap,
            truncated: false,
        }
    }

    /// Appends `bytes`, forgetting whatever falls out of the last `cap`.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        if bytes.len() >= self.cap {
            self.truncated |= !self.buf.is_empty() || bytes.len() > self.cap;
            self.buf.clear();
            self.buf.extend_from_slice(&bytes[bytes.len() - self.cap..]);
            return;
        }
        self.buf.extend_from_slice(bytes);
        if let Some(excess) = self.buf.len().checked_sub(self.cap).filter(|&n| n > 0) {
            self.buf.drain(..excess);
            self.truncated = true;
        }
    }

    /// The kept bytes as text: invalid UTF-8 replaced, trailing whitespace
    /// trimmed, and, if the front was cut off, the broken character there
    /// dropped rather than shown as a replacement character.
    pub(super) fn into_text(self) -> String {
        let mut bytes = self.buf.as_slice();
        if self.truncated {
            // A cut can land inside a character: skip its continuation bytes
            // (at most three) so the text starts on a character boundary.
            let skip = bytes
                .iter()
                .take(3)
                .take_while(|&&b| b & 0xc0 == 0x80)
                .count();
            bytes = &bytes[skip..];
        }
        String::from_utf8_lossy(bytes).trim_end().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_below_the_cap() {
        let mut t = Tail::new(8);
        t.push(b"ab");
        t.push(b"cd\n");
        assert_eq!(t.into_text(), "abcd");
    }

    #[test]
    fn keeps_the_last_bytes_over_many_pushes() {
        let mut t = Tail::new(4);
        for chunk in [&b"012"[..], b"345", b"6", b"789"] {
            t.push(chunk);
            assert!(t.buf.len() <= 4);
        }
        assert_eq!(t.into_text(), "6789");
    }

    #[test]
    fn a_big_chunk_replaces_the_tail() {
        let mut t = Tail::new(4);
        t.push(b"ab");
        t.push(b"0123456789");
        assert_eq!(t.into_text(), "6789");
        let mut t = Tail::new(4);
        t.push(b"abcd");
        assert!(!t.truncated);
        assert_eq!(t.into_text(), "abcd");
    }

    #[test]
    fn a_cut_character_is_dropped_not_replaced() {
        let mut t = Tail::new(5);
        t.push("xé1234".as_bytes()); // é is 2 bytes; the cut keeps its second
        assert_eq!(t.into_text(), "1234");
        let mut t = Tail::new(8);
        t.push(b"ok \xff bad");
        assert_eq!(t.into_text(), "ok \u{fffd} bad");
    }
}

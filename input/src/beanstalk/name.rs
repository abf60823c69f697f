//! Tube names: what beanstalkd accepts, checked once at the edge.

use super::TUBE_NAME_BYTES_MAX;

/// A tube name beanstalkd accepts: 1 to [`TUBE_NAME_BYTES_MAX`] bytes of
/// letters, digits and `-+/;.$_()`, not starting with `-`. Holding one
/// proves those rules hold, so it is safe to echo in a reply or a YAML
/// document unquoted (as beanstalkd does).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TubeName(String);

impl TubeName {
    /// The tube every connection uses and watches when it connects.
    pub fn default_tube() -> TubeName {
        TubeName("default".to_owned())
    }

    /// The name if `bytes` is a valid one, else `None`.
    pub fn new(bytes: &[u8]) -> Option<TubeName> {
        if bytes.is_empty() || bytes.len() > TUBE_NAME_BYTES_MAX || bytes[0] == b'-' {
            return None;
        }
        if name_chars(bytes) != bytes.len() {
            return None;
        }
        // Every byte is ASCII (checked above), so this cannot fail.
        std::str::from_utf8(bytes)
            .ok()
            .map(|s| TubeName(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TubeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether beanstalkd allows `b` in a name.
fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-+/;.$_()".contains(&b)
}

/// The length of the longest prefix of `bytes` made of name characters
/// (what C's `strspn(bytes, NAME_CHARS)` returns).
pub(super) fn name_chars(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|&&b| is_name_char(b)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_beanstalkds_rules() {
        assert!(TubeName::new(b"default").is_some());
        assert!(TubeName::new(b"a-b+c/d;e.f$g_h(i)").is_some());
        assert!(TubeName::new(&[b'a'; 200]).is_some());
        assert!(TubeName::new(&[b'a'; 201]).is_none());
        assert!(TubeName::new(b"").is_none());
        assert!(TubeName::new(b"-a").is_none());
        assert!(TubeName::new(b"a b").is_none());
        assert!(TubeName::new(b"a:b").is_none());
        assert!(TubeName::new("é".as_bytes()).is_none());
    }
}

//! The three ways beanstalkd 1.12 reads a number from a command line.
//!
//! Most arguments use a strict reader; `reserve-with-timeout` and `kick`
//! go through C's `strtol` and `strtoul` and inherit their leniency
//! (leading white space and a sign, trailing garbage ignored). Each reader
//! here reproduces one of them; the differences are observable, so they
//! are kept apart.

/// C's `isspace` in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Reads decimal digits from the start of `s`. Returns the value (`None`
/// when it does not fit a `u64`) and how many digits there were; like
/// `strtoul`, it consumes every digit even past an overflow.
fn digits(s: &[u8]) -> (Option<u64>, usize) {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let value = s[..n].iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    (value, n)
}

/// beanstalkd's strict reader: skips spaces (only `' '`), then needs a
/// digit; no sign. Returns the value and the rest of the line, or `None`
/// when there is no number or it does not fit a `u64`.
pub(super) fn read_u64(s: &[u8]) -> Option<(u64, &[u8])> {
    let start = s.iter().take_while(|&&b| b == b' ').count();
    let s = &s[start..];
    let (value, n) = digits(s);
    if n == 0 {
        return None;
    }
    Some((value?, &s[n..]))
}

/// [`read_u64`], refusing values above `u32::MAX`.
pub(super) fn read_u32(s: &[u8]) -> Option<(u32, &[u8])> {
    let (value, rest) = read_u64(s)?;
    Some((u32::try_from(value).ok()?, rest))
}

/// An optional sign after C white space, as `strtol` and `strtoul` read
/// it: (negative, rest).
fn sign(s: &[u8]) -> (bool, &[u8]) {
    let start = s.iter().take_while(|&&b| is_c_space(b)).count();
    let s = &s[start..];
    match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    }
}

/// C's `strtol(s, &end, 10)` on a 64-bit `long`, with beanstalkd's use of
/// it: `None` exactly when `errno` would be `ERANGE`. No digits reads as 0
/// (glibc sets no error then); anything after the digits is ignored.
pub(super) fn strtol(s: &[u8]) -> Option<i64> {
    let (negative, s) = sign(s);
    let (magnitude, _) = digits(s);
    let magnitude = magnitude?;
    if negative {
        // -2^63 is representable, +2^63 is not.
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// C's `strtoul(s, &end, 10)` on a 64-bit `unsigned long`: `None` when
/// there are no digits (beanstalkd checks `end`) or on `ERANGE`. A minus
/// sign negates modulo 2^64, as C does; anything after the digits is
/// ignored.
pub(super) fn strtoul(s: &[u8]) -> Option<u64> {
    let (negative, s) = sign(s);
    let (magnitude, n) = digits(s);
    if n == 0 {
        return None;
    }
    let magnitude = magnitude?;
    Some(if negative {
        magnitude.wrapping_neg()
    } else {
        magnitude
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strict_reader_takes_spaces_then_digits_only() {
        assert_eq!(read_u64(b"  12 x"), Some((12, &b" x"[..])));
        assert_eq!(read_u64(b"007"), Some((7, &b""[..])));
        assert_eq!(read_u64(b"\t1"), None);
        assert_eq!(read_u64(b"+1"), None);
        assert_eq!(read_u64(b"-1"), None);
        assert_eq!(read_u64(b""), None);
        assert_eq!(
            read_u64(b"18446744073709551615"),
            Some((u64::MAX, &b""[..]))
        );
        assert_eq!(read_u64(b"18446744073709551616"), None);
        assert_eq!(read_u32(b"4294967295"), Some((u32::MAX, &b""[..])));
        assert_eq!(read_u32(b"4294967296"), None);
    }

    #[test]
    fn strtol_is_lenient_but_refuses_overflow() {
        assert_eq!(strtol(b""), Some(0));
        assert_eq!(strtol(b"x"), Some(0));
        assert_eq!(strtol(b"-"), Some(0));
        assert_eq!(strtol(b" \t+5x"), Some(5));
        assert_eq!(strtol(b"-1"), Some(-1));
        assert_eq!(strtol(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(strtol(b"9223372036854775808"), None);
        assert_eq!(strtol(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(strtol(b"-9223372036854775809"), None);
    }

    #[test]
    fn strtoul_needs_a_digit_and_wraps_negatives() {
        assert_eq!(strtoul(b""), None);
        assert_eq!(strtoul(b" -"), None);
        assert_eq!(strtoul(b"\t3 "), Some(3));
        assert_eq!(strtoul(b"-1"), Some(u64::MAX));
        assert_eq!(strtoul(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(strtoul(b"18446744073709551616"), None);
        assert_eq!(strtoul(b"-18446744073709551615"), Some(1));
    }
}

//! Little-endian integers read at a byte offset, as every on-disk format
//! here stores them. The caller has checked that the bytes are there: a
//! slice too short is a bug in the caller, and panics.

/// The `u32` stored little-endian at `b[at..at + 4]`.
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

/// The `u64` stored little-endian at `b[at..at + 8]`.
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_to_le_bytes_wrote_at_any_offset() {
        let mut b = vec![0xAA; 3];
        b.extend_from_slice(&0x0102_0304u32.to_le_bytes());
        b.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(u32_at(&b, 3), 0x0102_0304);
        assert_eq!(u64_at(&b, 7), 0x0102_0304_0506_0708);
    }
}

//! MurmurHash3, x86 32-bit variant, the hash behind rollout bucketing.
//!
//! The hasher is incremental so that `seed ++ value` can be hashed without
//! building the concatenated string: the evaluation hot path stays free of
//! allocation. The result is identical to hashing the concatenation at once.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

/// Incremental MurmurHash3_x86_32.
#[derive(Clone, Copy, Debug)]
pub struct Murmur3 {
    h: u32,
    /// Pending bytes (fewer than 4), little-endian in the low bits.
    tail: u32,
    tail_len: u32,
    len: u32,
}

#[inline(always)]
fn mix_k(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

/// Up to 3 bytes as a little-endian word.
#[inline(always)]
fn partial(bytes: &[u8]) -> u32 {
    match *bytes {
        [a] => u32::from(a),
        [a, b] => u32::from(a) | u32::from(b) << 8,
        [a, b, c] => u32::from(a) | u32::from(b) << 8 | u32::from(c) << 16,
        _ => 0,
    }
}

impl Murmur3 {
    /// A hasher with the given seed parameter (bucketing uses 0).
    pub fn new(seed: u32) -> Self {
        Murmur3 {
            h: seed,
            tail: 0,
            tail_len: 0,
            len: 0,
        }
    }

    #[inline(always)]
    fn block(&mut self, k: u32) {
        self.h ^= mix_k(k);
        self.h = self
            .h
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
    }

    /// Feeds more bytes.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) {
        self.len = self.len.wrapping_add(bytes.len() as u32);
        let mut rest = bytes;
        if self.tail_len > 0 {
            let need = (4 - self.tail_len) as usize;
            if rest.len() < need {
                self.tail |= partial(rest) << (8 * self.tail_len);
                self.tail_len += rest.len() as u32;
                return;
            }
            let (head, tail) = rest.split_at(need);
            let k = self.tail | partial(head) << (8 * self.tail_len);
            self.block(k);
            self.tail = 0;
            self.tail_len = 0;
            rest = tail;
        }
        let mut chunks = rest.chunks_exact(4);
        for c in &mut chunks {
            self.block(u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        }
        let r = chunks.remainder();
        self.tail = partial(r);
        self.tail_len = r.len() as u32;
    }

    /// Feeds the `n` (at most 16) bytes held little-endian in `word`, whose
    /// bytes from `n` up are zero. The same as [`Murmur3::write`] with those
    /// bytes, without reading them from memory.
    #[inline(always)]
    pub fn write_word(&mut self, mut word: u128, n: u32) {
        debug_assert!(n <= 16);
        self.len = self.len.wrapping_add(n);
        let mut n = n;
        if self.tail_len > 0 {
            let need = 4 - self.tail_len;
            // `word` is zero above its `n` bytes, so the low 32 bits are
            // exactly the bytes available, padded with zeros.
            let low = word as u32;
            if n < need {
                self.tail |= low << (8 * self.tail_len);
                self.tail_len += n;
                return;
            }
            let take = low & (u32::MAX >> (8 * (4 - need)));
            self.block(self.tail | take << (8 * self.tail_len));
            word >>= 8 * need;
            n -= need;
            self.tail = 0;
            self.tail_len = 0;
        }
        while n >= 4 {
            self.block(word as u32);
            word >>= 32;
            n -= 4;
        }
        self.tail = word as u32;
        self.tail_len = n;
    }

    /// The final 32-bit hash.
    #[inline]
    pub fn finish(&self) -> u32 {
        let mut h = self.h;
        if self.tail_len > 0 {
            h ^= mix_k(self.tail);
        }
        h ^= self.len;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^= h >> 16;
        h
    }
}

/// MurmurHash3_x86_32 of `bytes` with the given seed parameter.
pub fn murmur3_x86_32(bytes: &[u8], seed: u32) -> u32 {
    let mut m = Murmur3::new(seed);
    m.write(bytes);
    m.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        assert_eq!(murmur3_x86_32(b"", 0), 0);
        assert_eq!(murmur3_x86_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_x86_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(
            murmur3_x86_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723
        );
    }

    #[test]
    fn words_hash_like_bytes() {
        let text = b"anchor.rollout-50user-1234567890ab";
        for pre in 0..8 {
            for n in 0..=16 {
                let bytes = &text[pre..pre + n];
                let mut padded = [0u8; 16];
                padded[..n].copy_from_slice(bytes);
                let mut by_bytes = Murmur3::new(0);
                by_bytes.write(&text[..pre]);
                by_bytes.write(bytes);
                let mut by_word = Murmur3::new(0);
                by_word.write(&text[..pre]);
                by_word.write_word(u128::from_le_bytes(padded), n as u32);
                assert_eq!(
                    by_word.finish(),
                    by_bytes.finish(),
                    "prefix {pre}, {n} bytes"
                );
                by_bytes.write(b"xyz");
                by_word.write(b"xyz");
                assert_eq!(by_word.finish(), by_bytes.finish(), "then more, {pre} {n}");
            }
        }
    }

    #[test]
    fn incremental_equals_one_shot() {
        let text = b"anchor.rollout-50user-1234567 and some more bytes";
        let whole = murmur3_x86_32(text, 0);
        for split in 0..text.len() {
            for split2 in split..text.len() {
                let mut m = Murmur3::new(0);
                m.write(&text[..split]);
                m.write(&text[split..split2]);
                m.write(&text[split2..]);
                assert_eq!(m.finish(), whole, "splits {split} {split2}");
            }
        }
    }
}

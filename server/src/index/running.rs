//! SHA-256 of a byte stream whose state can be written down and picked up again: an upload's
//! bytes are hashed as they arrive, PATCH after PATCH, maybe on another instance after a
//! takeover, so a published upload's digest (instant upload, `Repr-Digest`) is known without
//! reading the file back. The state is what FIPS 180-4 §6.2 keeps between blocks: the eight
//! words after every whole 64-byte block, the bytes of the unfinished block, and the length.
//!
//! RustCrypto's `Sha256` (sha2 0.10) cannot hand its state out (digest 0.11's
//! `SerializableState` can, at the price of a second sha2 in the build), so this drives its
//! compression function (`sha2::compress256`, the same SHA-NI / AVX code) and does the
//! padding itself (§5.1.1). Checked against `Sha256` for every split of many inputs.

use serde::{Deserialize, Serialize};
use sha2::digest::generic_array::{typenum::U64, GenericArray};

/// The initial hash value (FIPS 180-4 §5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Blocks handed to the compression function at once (copied into an aligned batch first: a
/// copy costs a few percent of the hashing, and no `unsafe` cast of the input is needed).
const BATCH: usize = 64;

type Block = GenericArray<u8, U64>;

/// The SHA-256 of the first [`Running::len`] bytes of a stream, to be continued.
#[derive(Clone, PartialEq, Eq)]
pub struct Running {
    state: [u32; 8],
    /// Bytes hashed so far (message lengths are below 2^61 bytes: SHA-256 counts bits in 64).
    len: u64,
    /// The unfinished block: its first `len % 64` bytes count.
    block: [u8; 64],
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("len", &self.len).finish()
    }
}

impl Default for Running {
    fn default() -> Self {
        Self::new()
    }
}

/// How a [`Running`] is written into a record: the length, the eight state words (64 hex
/// digits, big-endian) and the unfinished block's bytes (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub len: u64,
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rest: String,
}

impl Running {
    /// The hash of no bytes yet.
    pub fn new() -> Self {
        Self {
            state: H0,
            len: 0,
            block: [0; 64],
        }
    }

    /// How many bytes were hashed.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no byte was hashed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn fill(&self) -> usize {
        (self.len % 64) as usize
    }

    /// Hashes `data` after the bytes hashed so far.
    pub fn update(&mut self, mut data: &[u8]) {
        let fill = self.fill();
        self.len = self.len.wrapping_add(data.len() as u64);
        if fill > 0 {
            let take = data.len().min(64 - fill);
            self.block[fill..fill + take].copy_from_slice(&data[..take]);
            data = &data[take..];
            if fill + take < 64 {
                return;
            }
            sha2::compress256(&mut self.state, &[Block::clone_from_slice(&self.block)]);
        }
        let mut whole = data.chunks_exact(64);
        let mut batch = [Block::default(); BATCH];
        loop {
            let mut n = 0;
            for (slot, b) in batch.iter_mut().zip(whole.by_ref()) {
                slot.copy_from_slice(b);
                n += 1;
            }
            if n == 0 {
                break;
            }
            sha2::compress256(&mut self.state, &batch[..n]);
        }
        let rest = whole.remainder();
        self.block[..rest.len()].copy_from_slice(rest);
    }

    /// The digest of the bytes hashed so far (the state itself is kept, to go on).
    pub fn digest(&self) -> [u8; 32] {
        let mut state = self.state;
        let fill = self.fill();
        // §5.1.1: a 1 bit, zeros, and the length in bits in the last 8 bytes of a block.
        let mut tail = [0u8; 128];
        tail[..fill].copy_from_slice(&self.block[..fill]);
        tail[fill] = 0x80;
        let blocks = if fill < 56 { 1 } else { 2 };
        let end = blocks * 64;
        tail[end - 8..end].copy_from_slice(&self.len.wrapping_mul(8).to_be_bytes());
        let padded: Vec<Block> = tail[..end]
            .chunks_exact(64)
            .map(Block::clone_from_slice)
            .collect();
        sha2::compress256(&mut state, &padded);
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// The state as a record keeps it.
    pub fn save(&self) -> Saved {
        let words: Vec<u8> = self.state.iter().flat_map(|w| w.to_be_bytes()).collect();
        Saved {
            len: self.len,
            state: hex::encode(words),
            rest: hex::encode(&self.block[..self.fill()]),
        }
    }

    /// A state read back from a record; `None` unless it is well formed (64 hex digits of
    /// state, exactly `len % 64` bytes of unfinished block).
    pub fn load(saved: &Saved) -> Option<Self> {
        let words = hex::decode(&saved.state).ok()?;
        let rest = hex::decode(&saved.rest).ok()?;
        if words.len() != 32 || rest.len() as u64 != saved.len % 64 {
            return None;
        }
        let mut state = [0u32; 8];
        for (s, w) in state.iter_mut().zip(words.chunks_exact(4)) {
            *s = u32::from_be_bytes(w.try_into().ok()?);
        }
        let mut block = [0u8; 64];
        block[..rest.len()].copy_from_slice(&rest);
        Some(Self {
            state,
            len: saved.len,
            block,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    fn sha(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
    }

    // FIPS 180-4 examples (NIST "SHA256.pdf"): "abc" and the 448-bit message, whose padding
    // takes a second block.
    #[test]
    fn known_answers() {
        let abc = hex::decode("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
            .unwrap();
        let mut r = Running::new();
        r.update(b"abc");
        assert_eq!(r.digest()[..], abc[..]);
        let two = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        let mut r = Running::new();
        r.update(two);
        assert_eq!(r.digest(), sha(two));
        assert_eq!(Running::new().digest(), sha(b""));
    }

    #[test]
    fn every_split_of_every_length_near_block_edges_gives_sha256() {
        let all = data(200);
        for len in 0..all.len() {
            let whole = sha(&all[..len]);
            for cut in 0..=len {
                let mut r = Running::new();
                r.update(&all[..cut]);
                r.update(&all[cut..len]);
                assert_eq!(r.digest(), whole, "len {len} cut {cut}");
                assert_eq!(r.len(), len as u64);
            }
        }
    }

    #[test]
    fn long_inputs_in_uneven_pieces_across_batches_give_sha256() {
        let all = data(3 * BATCH * 64 + 77);
        for piece in [1, 63, 64, 65, 1000, BATCH * 64, BATCH * 64 + 1, all.len()] {
            let mut r = Running::new();
            for p in all.chunks(piece) {
                r.update(p);
            }
            assert_eq!(r.digest(), sha(&all), "pieces of {piece}");
        }
    }

    #[test]
    fn a_saved_state_goes_on_where_it_stopped() {
        let all = data(1000);
        for cut in [0, 1, 55, 56, 63, 64, 65, 128, 999] {
            let mut a = Running::new();
            a.update(&all[..cut]);
            let saved = a.save();
            let json = serde_json::to_string(&saved).unwrap();
            let mut b = Running::load(&serde_json::from_str(&json).unwrap()).unwrap();
            assert_eq!(b, a);
            b.update(&all[cut..]);
            assert_eq!(b.digest(), sha(&all), "cut {cut}");
        }
    }

    #[test]
    fn a_malformed_state_is_refused() {
        let mut r = Running::new();
        r.update(b"hello");
        let good = r.save();
        assert!(Running::load(&good).is_some());
        let bad = |f: &dyn Fn(&mut Saved)| {
            let mut s = good.clone();
            f(&mut s);
            Running::load(&s)
        };
        assert!(bad(&|s| s.len = 6).is_none(), "rest does not fit len");
        assert!(bad(&|s| s.len = 64 + 5).is_some(), "rest fits len % 64");
        assert!(bad(&|s| {
            s.state.pop();
        })
        .is_none());
        assert!(bad(&|s| s.state.replace_range(0..1, "g")).is_none());
        assert!(bad(&|s| s.rest = "zz".into()).is_none());
        assert!(bad(&|s| s.state.push_str("00")).is_none());
    }
}

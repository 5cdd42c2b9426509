//! Data for tests and benchmarks (feature `test-utils`).

/// `len` bytes that do not compress (splitmix64 from `seed`), the same for the same
/// arguments: payloads for throughput figures that Brotli cannot flatter.
///
/// ```
/// let a = peers_sdk::testdata::incompressible(1000, 7);
/// assert_eq!(a, peers_sdk::testdata::incompressible(1000, 7));
/// assert_ne!(a, peers_sdk::testdata::incompressible(1000, 8));
/// ```
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

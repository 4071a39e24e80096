//! Pieces both sandboxes use: a deterministic id generator, the fault draw, and the capped
//! traffic log.

use std::collections::VecDeque;

/// The most exchanges a sandbox keeps (oldest dropped first).
pub(crate) const EXCHANGE_CAP: usize = 200_000;

/// SplitMix64: the next value of the id stream `state`.
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A fault stream's starting state from a test's seed (xorshift starts slowly from small
/// seeds, so the seed is scrambled first; never zero).
pub(crate) fn fault_seed(seed: u64) -> u64 {
    let mut s = seed;
    splitmix(&mut s).max(1)
}

/// A uniform draw in [0, 1) from the fault stream `state` (xorshift64).
pub(crate) fn fault_draw(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

/// Append to a traffic log when recording, keeping at most [`EXCHANGE_CAP`] entries.
pub(crate) fn record<T>(log: &mut VecDeque<T>, recording: bool, item: T) {
    if !recording {
        return;
    }
    if log.len() >= EXCHANGE_CAP {
        log.pop_front();
    }
    log.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_enough_and_seeded() {
        let (mut a, mut b) = (fault_seed(7), fault_seed(7));
        let xs: Vec<f64> = (0..10_000).map(|_| fault_draw(&mut a)).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let below = xs.iter().filter(|x| **x < 0.1).count();
        assert!((800..1200).contains(&below), "{below}");
        assert_eq!(fault_draw(&mut b), xs[0], "the same seed, the same faults");
        let mut log = VecDeque::new();
        record(&mut log, false, 1);
        record(&mut log, true, 2);
        assert_eq!(log, [2]);
    }
}

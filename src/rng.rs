//! A small, fast, seedable pseudo-random number generator with serialisable state.
//!
//! [`Rng`] is xoshiro256** (Blackman & Vigna) seeded through SplitMix64. Its whole
//! state is four `u64` words, serialised with serde, so a checkpoint that stores the
//! generator resumes exactly the same stream. [`Rng::fork`] derives independent
//! streams (per epoch, per sample, per worker) from a parent state *without*
//! advancing the parent, so derived randomness never depends on thread timing.
//!
//! [`Stream`] names every stream a run draws from a seed, in one place.
//!
//! No external crates; every method is deterministic across platforms.

use serde::{Deserialize, Serialize};

/// The random streams of rlal, one per purpose: each is forked from the run's seed
/// (`Rng::stream(seed, s)` = `Rng::new(seed).fork(s.id())`), so draws added to one
/// purpose never shift another's. The ids are the constants the streams had before
/// they were named here (results of earlier runs are unchanged); a new purpose takes
/// a new id, never an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// `rlal prune` and `rlal bench agent`: the search's own draws (random and policy
    /// episodes, replay batches and SAC noise of the agent updates, the mutations and
    /// samples of the other search policies), checkpointed with the run.
    Search,
    /// `rlal bench agent`: the reward noise of the synthetic surface.
    BenchNoise,
    /// `rlal bench agent`: drawing the synthetic surface (sensitivities, drift, pairs).
    BenchSurface,
    /// `rlal bench search`: the timed random episodes.
    BenchSearch,
    /// Data loaders: the epoch order (then forked by epoch).
    Order,
    /// Data loaders: the augmentation of a sample (then forked by epoch and position).
    Augment,
    /// The class-balanced held-out reward subset (then forked by class).
    Holdout,
    /// The `training.train-samples` subset: a seed `seed ^ id` ([`Stream::seed`]).
    TrainSubset,
    /// Fine-tuning after the search (data order, augmentation): a seed `seed ^ id`
    /// ([`Stream::seed`]).
    Finetune,
}

impl Stream {
    /// The stream's id (the constant it had before it was named).
    pub const fn id(self) -> u64 {
        match self {
            Stream::Search => 0x5e_a4c4,
            Stream::BenchNoise => 0x7e57,
            Stream::BenchSurface => 0x5_0000_0acf,
            Stream::BenchSearch => 0xbe4c,
            Stream::Order => 0x4f52_4445_5200_0001,
            Stream::Augment => 0x4155_474d_0000_0002,
            Stream::Holdout => 0x484f_4c44_4f55_5403,
            Stream::TrainSubset => 0x7452_5355_4253_4554,
            Stream::Finetune => 0xf1e7,
        }
    }

    /// A derived seed `seed ^ id`, for the two purposes that pass a seed on instead of
    /// a generator ([`Stream::TrainSubset`], [`Stream::Finetune`]).
    pub const fn seed(self, seed: u64) -> u64 {
        seed ^ self.id()
    }
}

/// One SplitMix64 step: advances `state` and returns the next output.
#[inline]
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mix64(*state)
}

/// The SplitMix64 finaliser: a bijective 64-bit mixing function.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256** generator. Cheap to clone; `Serialize`/`Deserialize` store the full
/// state (`{"s":[a,b,c,d]}`), and deserialising rejects the invalid all-zero state.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RngState", into = "RngState")]
pub struct Rng {
    s: [u64; 4],
}

/// Serialised form of [`Rng`].
#[derive(Serialize, Deserialize)]
struct RngState {
    s: [u64; 4],
}

impl TryFrom<RngState> for Rng {
    type Error = String;
    fn try_from(st: RngState) -> Result<Self, String> {
        if st.s == [0; 4] {
            Err("rng state is all zeros (invalid for xoshiro256**)".into())
        } else {
            Ok(Rng { s: st.s })
        }
    }
}

impl From<Rng> for RngState {
    fn from(r: Rng) -> Self {
        RngState { s: r.s }
    }
}

impl Rng {
    /// A generator seeded from `seed` via SplitMix64 (any seed, including 0, is valid).
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s =
            [splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm), splitmix64(&mut sm)];
        if s == [0; 4] {
            // Practically unreachable (SplitMix64 outputs are a bijection of distinct
            // counters), but keep the generator valid regardless.
            return Rng { s: [1, 2, 3, 4] };
        }
        Rng { s }
    }

    /// The raw state words (for inspection; use serde to checkpoint).
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// Rebuilds a generator from raw state words; `None` for the all-zero state.
    pub fn from_state(s: [u64; 4]) -> Option<Self> {
        (s != [0; 4]).then_some(Rng { s })
    }

    /// Derives an independent generator for `stream_id` from the current state.
    ///
    /// Pure: does not advance `self`; the same state and id always give the same
    /// child, and different ids give unrelated streams. Chain forks to address a
    /// position in a hierarchy, e.g. `base.fork(epoch).fork(sample)`.
    pub fn fork(&self, stream_id: u64) -> Rng {
        let h = mix64(self.s[0])
            ^ mix64(self.s[1].rotate_left(17) ^ 0x6A09_E667_F3BC_C908)
            ^ mix64(self.s[2].rotate_left(31) ^ 0xBB67_AE85_84CA_A73B)
            ^ mix64(self.s[3].rotate_left(47) ^ 0x3C6E_F372_FE94_F82B);
        Rng::new(h ^ mix64(stream_id.wrapping_add(0xA54F_F53A_5F1D_36F1)))
    }

    /// The generator of purpose `s` for `seed`: `Rng::new(seed).fork(s.id())`.
    pub fn stream(seed: u64, s: Stream) -> Rng {
        Rng::new(seed).fork(s.id())
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Next 32 random bits (the high half of [`next_u64`](Self::next_u64)).
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform `f64` in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform `f32` in `[0, 1)` with 24 random bits.
    #[inline]
    pub fn uniform_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform `f64` in `[lo, hi)`.
    #[inline]
    pub fn range_f64(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform_f64()
    }

    /// Uniform `f32` in `[lo, hi)`.
    #[inline]
    pub fn range_f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform_f32()
    }

    /// `true` with probability `p` (clamped to `[0, 1]`).
    #[inline]
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform_f64() < p
    }

    /// Unbiased uniform integer in `0..n` (Lemire's multiply-and-reject).
    /// `below(0)` returns 0 without consuming randomness.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let mut m = (self.next_u64() as u128) * (n as u128);
        let mut lo = m as u64;
        if lo < n {
            let threshold = n.wrapping_neg() % n;
            while lo < threshold {
                m = (self.next_u64() as u128) * (n as u128);
                lo = m as u64;
            }
        }
        (m >> 64) as u64
    }

    /// Uniform index in `0..n` (see [`below`](Self::below)).
    #[inline]
    pub fn below_usize(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Fisher–Yates shuffle in place (from the back, drawing `below(i + 1)`).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below_usize(i + 1);
            v.swap(i, j);
        }
    }

    /// Standard normal `f64` by Box–Muller. Draws exactly two uniforms per call and
    /// caches nothing, so the state alone determines the stream.
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform_f64(); // (0, 1]: ln is finite
        let u2 = self.uniform_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Normal `f64` with the given mean and standard deviation.
    pub fn normal_with(&mut self, mean: f64, std: f64) -> f64 {
        mean + std * self.normal()
    }

    /// Standard normal as `f32` (computed in `f64`).
    pub fn normal_f32(&mut self) -> f32 {
        self.normal() as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut c = Rng::new(43);
        let va: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let vc: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_ne!(va, vc);
    }

    #[test]
    fn xoshiro_reference_vector() {
        // Reference: xoshiro256** with state {1,2,3,4} (from the authors' C code).
        let mut r = Rng::from_state([1, 2, 3, 4]).unwrap();
        let want = [11520u64, 0, 1509978240, 1215971899390074240];
        for w in want {
            assert_eq!(r.next_u64(), w);
        }
    }

    #[test]
    fn serde_round_trip_resumes_stream() {
        let mut a = Rng::new(7);
        for _ in 0..13 {
            a.next_u64();
        }
        let json = serde_json::to_string(&a).unwrap();
        let mut b: Rng = serde_json::from_str(&json).unwrap();
        assert_eq!(a, b);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert_eq!(a.normal().to_bits(), b.normal().to_bits());
        }
        assert!(serde_json::from_str::<Rng>(r#"{"s":[0,0,0,0]}"#).is_err());
    }

    #[test]
    fn fork_is_pure_and_distinct() {
        let base = Rng::new(1);
        let f1 = base.fork(5);
        assert_eq!(f1, base.fork(5));
        assert_eq!(base, Rng::new(1), "fork must not advance the parent");
        assert_ne!(base.fork(5), base.fork(6));
        assert_ne!(base.fork(5), base);
        let mut a = base.fork(0);
        let mut b = base.fork(1);
        let same = (0..64).filter(|_| a.next_u64() == b.next_u64()).count();
        assert_eq!(same, 0);
    }

    #[test]
    fn streams_keep_their_ids_and_are_distinct() {
        // The ids of the streams before they were named: changing one changes results.
        assert_eq!(Stream::Search.id(), 0x5ea4c4);
        assert_eq!(Stream::BenchSurface.id(), 0x5u64 << 32 | 0xacf);
        assert_eq!(Stream::Finetune.seed(3), 3 ^ 0xf1e7);
        assert_eq!(Rng::stream(9, Stream::Search), Rng::new(9).fork(0x5ea4c4));
        let all = [
            Stream::Search,
            Stream::BenchNoise,
            Stream::BenchSurface,
            Stream::BenchSearch,
            Stream::Order,
            Stream::Augment,
            Stream::Holdout,
            Stream::TrainSubset,
            Stream::Finetune,
        ];
        let mut ids: Vec<u64> = all.iter().map(|s| s.id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all.len());
    }

    #[test]
    fn uniform_ranges_and_moments() {
        let mut r = Rng::new(3);
        let n = 200_000;
        let (mut s32, mut s64) = (0.0f64, 0.0f64);
        for _ in 0..n {
            let a = r.uniform_f32();
            let b = r.uniform_f64();
            assert!((0.0..1.0).contains(&a));
            assert!((0.0..1.0).contains(&b));
            s32 += a as f64;
            s64 += b;
        }
        assert!((s32 / n as f64 - 0.5).abs() < 0.01);
        assert!((s64 / n as f64 - 0.5).abs() < 0.01);
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = Rng::new(9);
        assert_eq!(r.below(0), 0);
        assert_eq!(r.below(1), 0);
        let mut counts = [0usize; 7];
        for _ in 0..70_000 {
            counts[r.below(7) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        for _ in 0..1000 {
            assert!(r.below(u64::MAX) < u64::MAX);
        }
    }

    #[test]
    fn shuffle_is_a_permutation_and_deterministic() {
        let mut v: Vec<u32> = (0..100).collect();
        let mut w = v.clone();
        Rng::new(11).shuffle(&mut v);
        Rng::new(11).shuffle(&mut w);
        assert_eq!(v, w);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
        let mut empty: [u8; 0] = [];
        Rng::new(1).shuffle(&mut empty);
    }

    #[test]
    fn normal_moments() {
        let mut r = Rng::new(5);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "var {var}");
        assert!(xs.iter().all(|x| x.is_finite()));
    }
}

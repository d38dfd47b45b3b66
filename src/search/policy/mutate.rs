//! Moves between architectures for `evolution` and `local`: a layer's width moved
//! by allowed widths, then the budget repair that brings the result back to allowed
//! widths (the layer's minimum to its full width, multiples of `channel-multiple`)
//! within the budget, using it up as far as the layers the move left alone can (the
//! moved layers are not widened back, so one of them may still have room).
use crate::agent::Budget;
use crate::rng::Rng;

/// Tries to draw a child that differs from its parent before giving up (a parent
/// whose every move is undone by the repair, e.g. at the budget's edge everywhere).
const TRIES: usize = 8;

/// A child of `parent` and the layers its move changed: `moves` changes the widths
/// of some layers (and returns them), then [`repair`] adjusts the others; drawn
/// again (up to [`TRIES`] times) while it equals the parent.
pub fn child(
    budget: &Budget,
    parent: &[usize],
    rng: &mut Rng,
    mut moves: impl FnMut(&mut Vec<usize>, &mut Rng) -> Vec<usize>,
) -> (Vec<usize>, Vec<usize>) {
    let mut out = (parent.to_vec(), Vec::new());
    for _ in 0..TRIES {
        let mut kept = parent.to_vec();
        let moved = moves(&mut kept, rng);
        repair(budget, &mut kept, &moved, rng);
        out = (kept, moved);
        if out.0 != parent {
            break;
        }
    }
    out
}

/// `n` distinct random layers of `layers` (all of them when n >= layers).
pub fn layers(layers: usize, n: usize, rng: &mut Rng) -> Vec<usize> {
    let mut all: Vec<usize> = (0..layers).collect();
    rng.shuffle(&mut all);
    all.truncate(n.clamp(1, layers.max(1)));
    all
}

/// Layer `l` of `kept` moved `steps` allowed widths up or down (a random direction;
/// the other one at the end of the range).
pub fn step_width(budget: &Budget, kept: &mut [usize], l: usize, steps: usize, rng: &mut Rng) {
    let (lo, c) = (budget.min_width(l), budget.layers[l].channels);
    let up = match (kept[l] >= c, kept[l] <= lo) {
        (true, _) => false,
        (_, true) => true,
        _ => rng.bernoulli(0.5),
    };
    for _ in 0..steps {
        kept[l] =
            if up { budget.next_allowed(l, kept[l]) } else { budget.prev_allowed(l, kept[l]) };
    }
}

/// Brings `kept` within the budget and up to it, changing as few layers other than
/// `fixed` as it can: while it exceeds the budget, a random layer narrows one allowed
/// width at a time until it fits or reaches its minimum (the fixed layers too once the
/// others are at their minimum); then, while some layer other than `fixed` can widen
/// one allowed width and still fit, a random one of them widens as far as it fits.
pub fn repair(budget: &Budget, kept: &mut [usize], fixed: &[usize], rng: &mut Rng) {
    let n = kept.len();
    let free: Vec<usize> = (0..n).filter(|l| !fixed.contains(l)).collect();
    let all: Vec<usize> = (0..n).collect();
    while !budget.fits(kept) {
        let narrowable = |ls: &[usize], k: &[usize]| -> Vec<usize> {
            ls.iter().copied().filter(|&l| k[l] > budget.min_width(l)).collect()
        };
        let mut c = narrowable(&free, kept);
        if c.is_empty() {
            c = narrowable(&all, kept);
        }
        let Some(&l) = c.get(rng.below_usize(c.len().max(1))) else {
            return; // every layer at its minimum: the budget's floor, which fits
        };
        while !budget.fits(kept) && kept[l] > budget.min_width(l) {
            kept[l] = budget.prev_allowed(l, kept[l]);
        }
    }
    loop {
        let c: Vec<usize> = free.iter().copied().filter(|&l| widens(budget, kept, l)).collect();
        let Some(&l) = c.get(rng.below_usize(c.len().max(1))) else { return };
        while widens(budget, kept, l) {
            kept[l] = budget.next_allowed(l, kept[l]);
        }
    }
}

/// Whether layer `l` of `kept` can widen one allowed width and still fit the budget.
fn widens(budget: &Budget, kept: &mut [usize], l: usize) -> bool {
    let old = kept[l];
    kept[l] = budget.next_allowed(l, old);
    let ok = kept[l] != old && budget.fits(kept);
    kept[l] = old;
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::policy::testutil::{budget, in_bounds, uses_budget};

    #[test]
    fn repair_meets_the_budget_and_uses_it_up() {
        let b = budget(0.4, 4);
        let mut rng = Rng::new(1);
        let full: Vec<usize> = b.layers.iter().map(|l| l.channels).collect();
        let mins: Vec<usize> = (0..full.len()).map(|l| b.min_width(l)).collect();
        for start in [full, mins] {
            let mut k = start.clone();
            repair(&b, &mut k, &[0], &mut rng);
            assert!(in_bounds(&b, &k) && uses_budget(&b, &k), "{start:?} -> {k:?}");
        }
        // A fixed layer keeps its width when the others can absorb the change.
        let mut k: Vec<usize> = (0..b.layers.len()).map(|l| b.min_width(l)).collect();
        k[3] = b.layers[3].channels;
        repair(&b, &mut k, &[3], &mut rng);
        assert!(in_bounds(&b, &k) && uses_budget(&b, &k));
        assert_eq!(k[3], b.layers[3].channels);
    }

    #[test]
    fn steps_stay_on_allowed_widths() {
        let b = budget(0.5, 8);
        let mut rng = Rng::new(2);
        let mut k: Vec<usize> = b.layers.iter().map(|l| l.channels).collect();
        for _ in 0..50 {
            let l = rng.below_usize(k.len());
            let before = k[l];
            step_width(&b, &mut k, l, 1, &mut rng);
            let allowed: Vec<usize> = b.allowed(l).collect();
            let at = |w: usize| allowed.iter().position(|&x| x == w).unwrap();
            assert_eq!(at(before).abs_diff(at(k[l])), 1, "layer {l}: {before} -> {}", k[l]);
        }
    }
}

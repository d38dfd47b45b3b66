//! `policy: uniform`: the baseline that keeps the same fraction of every layer (the
//! largest one within the budget), one architecture per epoch, no search.
use super::{Ctx, SearchPolicy};
use crate::search::reward::uniform_kept;
use crate::train::TrainError;

/// See the module documentation.
pub struct Uniform;

impl SearchPolicy for Uniform {
    fn name(&self) -> &'static str {
        "uniform"
    }

    fn keeps_best(&self) -> bool {
        false
    }

    fn propose(&mut self, _t: usize, ctx: &mut Ctx) -> Result<Vec<Vec<usize>>, TrainError> {
        Ok(vec![uniform_kept(ctx.budget)])
    }
}

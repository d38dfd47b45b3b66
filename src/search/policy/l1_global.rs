//! `policy: l1-global`: the baseline with one global threshold on layer-normalised
//! filter norms of the current weights, within the budget: one architecture per
//! epoch, no search.
use super::{Ctx, SearchPolicy};
use crate::search::reward::l1_global_kept;
use crate::train::TrainError;

/// See the module documentation; `p`: the filter norm (`search.criterion`).
pub struct L1Global {
    pub p: u32,
}

impl SearchPolicy for L1Global {
    fn name(&self) -> &'static str {
        "l1-global"
    }

    fn keeps_best(&self) -> bool {
        false
    }

    fn propose(&mut self, _t: usize, ctx: &mut Ctx) -> Result<Vec<Vec<usize>>, TrainError> {
        let net = ctx
            .net
            .ok_or_else(|| TrainError::Graph("l1-global ranks the filters of a network".into()))?;
        Ok(vec![l1_global_kept(net, ctx.budget, self.p)?])
    }
}

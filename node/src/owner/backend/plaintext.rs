//! The `plaintext` backend: the exact value of the lineage, computed on the owner's node.

use super::Ask;
use super::{Backend, Ctx, Plan};
use crate::error::Error;
use duo_engine::Answer;
use duo_policies::Backend as Kind;

/// The exact value.
#[derive(Debug, Clone, Copy)]
pub struct Plaintext;

impl Backend for Plaintext {
    fn kind(&self) -> Kind {
        Kind::Plaintext
    }

    fn admit(&self, ask: &Ask<'_>) -> Result<(), Error> {
        refuse_foreign_params(ask)
    }

    fn plan(&self, _: &Ctx<'_>, _: &Ask<'_>) -> Result<Plan, Error> {
        Ok(Plan::default())
    }

    fn answer(&self, ctx: &Ctx<'_>, _: &Plan) -> Result<Option<Answer>, Error> {
        crate::owner::evaluate_at(ctx.cache, ctx.conn, ctx.checked, ctx.versions).map(Some)
    }
}

/// A scoring model belongs to backend `2pc` only.
pub(super) fn refuse_foreign_params(ask: &Ask<'_>) -> Result<(), Error> {
    if ask.scoring.is_some() {
        return Err(Error::Refused(
            "only backend 2pc takes a scoring model".into(),
        ));
    }
    Ok(())
}

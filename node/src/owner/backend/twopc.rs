//! The `2pc` backend: private scoring. An approved request releases nothing yet: it lets the FI start one
//! two-party run of its model against the owner's attributes (see [`crate::owner::scoring`]).

use super::Ask;
use super::{Backend, Ctx, Plan};
use crate::error::Error;
use crate::store::prelude::*;
use duo_engine::Answer;
use duo_policies::{Backend as Kind, ScoringFacts};

/// Private scoring.
#[derive(Debug, Clone, Copy)]
pub struct TwoPc;

impl Backend for TwoPc {
    fn kind(&self) -> Kind {
        Kind::TwoPc
    }

    fn admit(&self, ask: &Ask<'_>) -> Result<(), Error> {
        match ask.scoring {
            None => Err(Error::Refused(
                "a 2pc request is a scoring request: name the model's attributes and what it reveals (`duo fi score`)"
                    .into(),
            )),
            Some(spec) => spec.validate(),
        }
    }

    fn plan(&self, ctx: &Ctx<'_>, ask: &Ask<'_>) -> Result<Plan, Error> {
        let spec = ask
            .scoring
            .ok_or_else(|| Error::Internal("a scoring request without its spec".into()))?;
        let policy = ctx
            .policy
            .ok_or_else(|| Error::Internal("a scoring plan without the policy".into()))?;
        let limits = policy.scoring_limits();
        let since = crate::store::now_unix() - limits.window_seconds();
        Ok(Plan {
            scoring: Some(ScoringFacts {
                reveal: spec.reveal,
                used: ctx.conn.scoring_use(ask.principal, since)?,
                attributes: spec.attributes.len(),
            }),
            ..Plan::default()
        })
    }

    /// Every scoring run is its own computation (the FI's model is its private input): never reused.
    fn reuses_answers(&self) -> bool {
        false
    }

    fn answer(&self, _: &Ctx<'_>, _: &Plan) -> Result<Option<Answer>, Error> {
        Ok(None)
    }
}

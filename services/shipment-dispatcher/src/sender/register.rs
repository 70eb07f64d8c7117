//! Registration (flow 2, I1): queued shipments are claimed, their instructions built with every
//! mapping of the shop (S3 ⑥–⑬, by the shop's WMS adapter), committed `SENDING` **before** the
//! call, registered in one call of at most the WMS's batch size, and each settled from what
//! the WMS answered ([`crate::settle`]).
//!
//! - An order whose instruction cannot be built goes to `ERROR` naming what is missing, with
//!   no WMS call.
//! - A row refused as already registered is searched at once ([`super::reconcile`]); a row
//!   without an answer and a call whose answer was lost (timeout, reset, 5xx) stay `SENDING`,
//!   possibly in the WMS, and are searched once the WMS had time to apply them: never a
//!   blind re-send.
//! - A call that was surely not applied (down, 429, 401, a whole-call `NG`) puts every row
//!   back to `QUEUED` and the shop into back-off.
//! - A batch refused whole with a 4xx and no `NG` (a proxy's 413 body limit) is sent again in
//!   halves until the refused row is alone (`ERROR`); the others go.
//! - Every settle step is fenced by the claim token taken with the claim
//!   ([`crate::settle::stale`]).

use std::collections::HashMap;

use wmslink_wms_client::port::{BuildError, Exchange, Instruction, RegistrationOutcome, Wms};

use super::reconcile;
use super::reconcile::Claims;
use crate::core::Core;
use crate::errors::PassError;
use crate::settings::ShopView;
use crate::settle::{self, CallFailure, RowAnswer, SearchCause, Settle};
use crate::snapshot;
use crate::state_machine::Input;
use crate::store::{self, Appends, History};

/// What [`claim`] took off the queue.
pub struct Claimed {
    /// Instructions of the shipments moved to `SENDING`.
    pub instructions: Vec<Instruction>,
    /// Their claim tokens, by order number.
    pub claims: Claims,
    /// Shipments taken off the queue (built or refused).
    pub total: usize,
    /// The traces of the claimed shipments' events, for the call's span.
    pub traceparents: Vec<String>,
}

/// Takes up to `batch` queued shipments: builds each instruction, moves the buildable ones to
/// `SENDING` and the others to `ERROR`, and commits before any call.
pub async fn claim(
    core: &Core,
    shop_id: &str,
    wms: &dyn Wms,
    view: &ShopView,
    batch: usize,
) -> Result<Claimed, PassError> {
    let limit = i64::try_from(batch).unwrap_or(200);
    let mut tx = core.pool.begin().await?;
    let mut appends = Appends::new(&core.subjects);
    let queued = store::lock_queued(&mut tx, shop_id, limit).await?;
    let total = queued.len();
    let mut instructions = Vec::with_capacity(total);
    let mut claims = Claims::new();
    let mut traceparents = Vec::new();
    let now = chrono::Utc::now();
    for mut row in queued {
        let built = snapshot::decode(&row.order_snapshot)
            .map_err(|err| BuildError {
                problems: vec![format!("the stored order snapshot cannot be read: {err}")],
            })
            .and_then(|order| wms.build_instruction(&order, &view.detail));
        let history = match built {
            Ok(instruction) => {
                let line = row.apply(
                    Input::Claim,
                    format!(
                        "taken for registration by replica {} (revision {}): {}",
                        core.replica,
                        row.order_revision,
                        instruction.summary()
                    ),
                );
                row.sent_revision = Some(row.order_revision);
                row.sent_fingerprint = Some(row.content_fingerprint.clone());
                settle::claim(&mut row, &core.doubt, now);
                claims.insert(row.order_no.clone(), row.claim_token);
                traceparents.extend(row.trace_context.clone());
                instructions.push(instruction);
                line
            }
            Err(err) => {
                row.last_error = Some(err.to_string());
                row.apply(Input::BuildFailed, err.to_string())
            }
        };
        let history = match history {
            Ok(line) => vec![line],
            Err(refused) => vec![History::note(format!("internal: {refused}"))],
        };
        appends.save(&mut tx, &mut row, &history, true).await?;
    }
    appends.commit(tx).await?;
    core.relay.wake();
    Ok(Claimed {
        instructions,
        claims,
        total,
        traceparents,
    })
}

/// One registration call for claimed shipments, then each settled from the answer.
pub async fn register(
    core: &Core,
    shop_id: &str,
    wms: &dyn Wms,
    view: &ShopView,
    instructions: Vec<Instruction>,
    claims: &Claims,
) -> Result<(), PassError> {
    let request = wms.describe(Exchange::Register {
        rows: instructions.len(),
    });
    let summaries: HashMap<&str, &str> = instructions
        .iter()
        .map(|i| (i.order_no(), i.summary()))
        .collect();
    let request_of = |order_no: &str| {
        format!(
            "{request}: {}",
            summaries.get(order_no).copied().unwrap_or(order_no)
        )
    };
    tracing::info!(
        shop = shop_id,
        rows = instructions.len(),
        "registering shipment instructions"
    );
    let err = match wms.register(&instructions).await {
        Ok(answers) => {
            let answers = answers.into_iter().map(|a| (a.order_no, a.outcome));
            return settle_answers(core, shop_id, wms, view, claims, answers, &request_of).await;
        }
        Err(err) => err,
    };
    let error = err.to_string();
    match settle::of_call_failure(&err, instructions.len()) {
        CallFailure::Split => {
            tracing::warn!(shop = shop_id, rows = instructions.len(), error = %err, "batch refused whole without a reason; sending it in halves");
            let mut tx = core.pool.begin().await?;
            let mut appends = Appends::new(&core.subjects);
            let order_nos: Vec<String> = claims.keys().cloned().collect();
            for mut row in store::lock_many(&mut tx, shop_id, &order_nos).await? {
                let history = [
                    History::wms_call(request_of(&row.order_no), "", error.as_str()),
                    History::note(
                        "the batch was refused whole without a reason (nothing registered): sent again in halves to find the refused row",
                    ),
                ];
                appends.save(&mut tx, &mut row, &history, false).await?;
            }
            appends.commit(tx).await?;
            let mut first = instructions;
            let second = first.split_off(first.len() / 2);
            for half in [first, second] {
                let half_claims: Claims = half
                    .iter()
                    .filter_map(|i| {
                        let token = claims.get(i.order_no())?;
                        Some((i.order_no().to_owned(), *token))
                    })
                    .collect();
                Box::pin(register(core, shop_id, wms, view, half, &half_claims)).await?;
            }
            Ok(())
        }
        CallFailure::InDoubt(outcome) => {
            tracing::warn!(shop = shop_id, error = %err, "registration outcome unknown; the shipments stay in doubt and are searched later");
            settle_all(core, shop_id, view, claims, &error, &outcome, &request_of).await?;
            // A WMS failing mid-call is not sent the next batch at once: the shop backs off.
            Err(PassError::Wms(err))
        }
        CallFailure::Settle(outcome) => {
            settle_all(core, shop_id, view, claims, &error, &outcome, &request_of).await
        }
        CallFailure::BackOff(outcome) => {
            settle_all(core, shop_id, view, claims, &error, &outcome, &request_of).await?;
            Err(PassError::Wms(err))
        }
    }
}

/// Settles each `SENDING` row from its row of the answer; a row refused as already
/// registered is searched at once, a row the answer says nothing of stays in doubt.
async fn settle_answers(
    core: &Core,
    shop_id: &str,
    wms: &dyn Wms,
    view: &ShopView,
    claims: &Claims,
    answers: impl Iterator<Item = (String, RegistrationOutcome)>,
    request_of: &impl Fn(&str) -> String,
) -> Result<(), PassError> {
    let mut answers: HashMap<String, RegistrationOutcome> = answers.collect();
    let mut to_search = Claims::new();
    let order_nos: Vec<String> = claims.keys().cloned().collect();
    let now = chrono::Utc::now();
    let mut tx = core.pool.begin().await?;
    let mut appends = Appends::new(&core.subjects);
    for mut row in store::lock_many(&mut tx, shop_id, &order_nos).await? {
        let token = claims.get(&row.order_no).copied().unwrap_or_default();
        let (history, outcome) = match answers.remove(&row.order_no).map(settle::of_registration) {
            Some(RowAnswer::Settle { response, outcome }) => (
                vec![History::wms_call(request_of(&row.order_no), response, "")],
                outcome,
            ),
            Some(RowAnswer::Search { response, note }) => {
                if settle::stale(&row, token, &Settle::NotFound).is_none() {
                    to_search.insert(row.order_no.clone(), token);
                }
                let history = vec![
                    History::wms_call(request_of(&row.order_no), response, ""),
                    History::note(note),
                ];
                appends.save(&mut tx, &mut row, &history, false).await?;
                continue;
            }
            None => (
                vec![History::wms_call(
                    request_of(&row.order_no),
                    "",
                    "the answer holds no result for this row",
                )],
                Settle::InDoubt {
                    error: "the WMS answer holds no result for this row".to_owned(),
                },
            ),
        };
        reconcile::settle_row(
            core,
            &mut tx,
            &mut appends,
            &mut row,
            token,
            history,
            outcome,
            view,
            now,
        )
        .await?;
    }
    appends.commit(tx).await?;
    core.relay.wake();
    if !to_search.is_empty() {
        let searched = reconcile::resolve(
            core,
            shop_id,
            wms,
            view,
            &to_search,
            SearchCause::Duplicate,
            "after an already-registered answer",
        )
        .await;
        // A failed search leaves them SENDING: they are searched once their claim expires.
        if let Err(PassError::Wms(err)) = &searched {
            tracing::warn!(shop = shop_id, error = %err, "search after E_DUPLICATE failed; searched later");
        } else {
            searched?;
        }
    }
    Ok(())
}

/// Settles every `SENDING` row of a call that failed as a whole the same way, each with the
/// failed call in its history.
async fn settle_all(
    core: &Core,
    shop_id: &str,
    view: &ShopView,
    claims: &Claims,
    error: &str,
    outcome: &Settle,
    request_of: &impl Fn(&str) -> String,
) -> Result<(), PassError> {
    let order_nos: Vec<String> = claims.keys().cloned().collect();
    let now = chrono::Utc::now();
    let mut tx = core.pool.begin().await?;
    let mut appends = Appends::new(&core.subjects);
    for mut row in store::lock_many(&mut tx, shop_id, &order_nos).await? {
        let token = claims.get(&row.order_no).copied().unwrap_or_default();
        let history = vec![History::wms_call(request_of(&row.order_no), "", error)];
        reconcile::settle_row(
            core,
            &mut tx,
            &mut appends,
            &mut row,
            token,
            history,
            outcome.clone(),
            view,
            now,
        )
        .await?;
    }
    appends.commit(tx).await?;
    core.relay.wake();
    Ok(())
}

//! Registration (flow 2, I1): queued shipments are claimed, their instructions built with every
//! mapping of the shop (S3 ⑥–⑬, by the shop's WMS adapter), committed `SENDING` **before** the
//! call, registered in one call of at most the WMS's batch size, and each settled from what
//! the WMS answered ([`crate::settle`]).
//!
//! - An order whose instruction cannot be built goes to `ERROR` naming what is missing, with
//!   no WMS call.
//! - A row refused as already registered, a row without an answer, and a call whose answer
//!   was lost are searched at once ([`super::reconcile`]): never a blind re-send.
//! - A call that failed otherwise puts every row back to `QUEUED` and the shop into back-off.

use std::collections::HashMap;

use wmslink_wms_client::port::{BuildError, Exchange, Instruction, RegistrationOutcome, Wms};

use super::reconcile;
use crate::core::Core;
use crate::errors::PassError;
use crate::settings::ShopView;
use crate::settle::{self, CallFailure, RowAnswer, Settle};
use crate::snapshot;
use crate::state_machine::{Input, Status};
use crate::store::{self, History};

/// What [`claim`] took off the queue.
pub struct Claimed {
    /// Instructions of the shipments moved to `SENDING`.
    pub instructions: Vec<Instruction>,
    /// Shipments taken off the queue (built or refused).
    pub total: usize,
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
    let queued = store::lock_queued(&mut tx, shop_id, limit).await?;
    let total = queued.len();
    let mut instructions = Vec::with_capacity(total);
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
                        "taken for registration (revision {}): {}",
                        row.order_revision,
                        instruction.summary()
                    ),
                );
                row.sent_revision = Some(row.order_revision);
                row.sent_fingerprint = Some(row.content_fingerprint.clone());
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
        store::persist(&mut tx, &core.subjects, &mut row, &history, true).await?;
    }
    tx.commit().await?;
    core.relay.wake();
    Ok(Claimed {
        instructions,
        total,
    })
}

/// One registration call for claimed shipments, then each settled from the answer.
pub async fn register(
    core: &Core,
    shop_id: &str,
    wms: &dyn Wms,
    view: &ShopView,
    instructions: Vec<Instruction>,
) -> Result<(), PassError> {
    let order_nos: Vec<String> = instructions
        .iter()
        .map(|i| i.order_no().to_owned())
        .collect();
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
            return settle_answers(core, shop_id, wms, view, &order_nos, answers, &request_of)
                .await;
        }
        Err(err) => err,
    };
    match settle::of_call_failure(&err) {
        CallFailure::SearchFirst => {
            tracing::warn!(shop = shop_id, error = %err, "registration outcome unknown; searching the WMS");
            let mut tx = core.pool.begin().await?;
            for mut row in store::lock_many(&mut tx, shop_id, &order_nos).await? {
                let history = [
                    History::wms_call(request_of(&row.order_no), "", err.to_string()),
                    History::note(
                        "the answer was lost: searching the WMS before anything is sent again",
                    ),
                ];
                store::persist(&mut tx, &core.subjects, &mut row, &history, false).await?;
            }
            tx.commit().await?;
            reconcile::resolve(
                core,
                shop_id,
                wms,
                view,
                &order_nos,
                "after an unknown outcome",
            )
            .await
        }
        CallFailure::Settle(outcome) => {
            let error = err.to_string();
            settle_all(
                core,
                shop_id,
                view,
                &order_nos,
                &error,
                &outcome,
                &request_of,
            )
            .await
        }
        CallFailure::BackOff(outcome) => {
            let error = err.to_string();
            settle_all(
                core,
                shop_id,
                view,
                &order_nos,
                &error,
                &outcome,
                &request_of,
            )
            .await?;
            Err(PassError::Wms(err))
        }
    }
}

/// Settles each `SENDING` row from its row of the answer; the rows the answer proves nothing
/// for (already registered, or no answer for the row) are searched at once.
async fn settle_answers(
    core: &Core,
    shop_id: &str,
    wms: &dyn Wms,
    view: &ShopView,
    order_nos: &[String],
    answers: impl Iterator<Item = (String, RegistrationOutcome)>,
    request_of: &impl Fn(&str) -> String,
) -> Result<(), PassError> {
    let mut answers: HashMap<String, RegistrationOutcome> = answers.collect();
    let mut to_search = Vec::new();
    let mut tx = core.pool.begin().await?;
    for mut row in store::lock_many(&mut tx, shop_id, order_nos).await? {
        if row.status != Status::Sending {
            continue;
        }
        let Some(answer) = answers.remove(&row.order_no) else {
            // No result for the row: leave it in doubt for the search below.
            to_search.push(row.order_no.clone());
            continue;
        };
        let history = match settle::of_registration(answer) {
            RowAnswer::Settle { response, outcome } => {
                let mut history = vec![History::wms_call(request_of(&row.order_no), response, "")];
                history.extend(settle::settle(&mut row, outcome, &view.policy));
                history
            }
            RowAnswer::Search { response, note } => {
                to_search.push(row.order_no.clone());
                vec![
                    History::wms_call(request_of(&row.order_no), response, ""),
                    History::note(note),
                ]
            }
        };
        let publish = row.status != Status::Sending;
        store::persist(&mut tx, &core.subjects, &mut row, &history, publish).await?;
    }
    tx.commit().await?;
    core.relay.wake();
    if !to_search.is_empty() {
        reconcile::resolve(
            core,
            shop_id,
            wms,
            view,
            &to_search,
            "after an already-registered or missing row answer",
        )
        .await?;
    }
    Ok(())
}

/// Settles every `SENDING` row of a call that failed as a whole the same way, each with the
/// failed call in its history.
async fn settle_all(
    core: &Core,
    shop_id: &str,
    view: &ShopView,
    order_nos: &[String],
    error: &str,
    outcome: &Settle,
    request_of: &impl Fn(&str) -> String,
) -> Result<(), PassError> {
    let mut tx = core.pool.begin().await?;
    for mut row in store::lock_many(&mut tx, shop_id, order_nos).await? {
        if row.status != Status::Sending {
            continue;
        }
        let mut history = vec![History::wms_call(request_of(&row.order_no), "", error)];
        history.extend(settle::settle(&mut row, outcome.clone(), &view.policy));
        store::persist(&mut tx, &core.subjects, &mut row, &history, true).await?;
    }
    tx.commit().await?;
    core.relay.wake();
    Ok(())
}

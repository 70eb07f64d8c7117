//! [`WmsClient`] as the [`Wms`] port: COMMERCE ROBO's calls, field names and status ids turned
//! into wmslink's terms.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wmslink_proto::orders::v1::Order;
use wmslink_proto::settings::v1::DetailSettings;

use super::client::WmsClient;
use super::rows::{build_row, summarize};
use super::types::{
    MAX_IN_VALUES, MAX_ROWS_PER_REGISTRATION, MAX_SEARCH_LIMIT, RowOutcome, SearchPage,
    SearchQuery, ShipmentInstruction, WmsOrder as RoboOrder, is_cancel_refused_status,
    shipping_status_name,
};
use crate::error::WmsError;
use crate::port::{
    BuildError, CancelOutcome, CarrierStatus, Exchange, Instruction, InstructionBody, Limits, Page,
    PageCursor, Registration, RegistrationOutcome, Wms, WmsOrder,
};

/// The code of the conversion robot's duplicate check (重複チェック).
const DUPLICATE: &str = "E_DUPLICATE";
/// The code of a cancel refused for good (shipped, or in 90/95/100).
const NOT_CANCELLABLE: &str = "E_NOT_CANCELLABLE";
/// 処理中.
const PROCESSING_STATUS_ID: i32 = 20;
/// Carrier statuses after which nothing more happens: delivered (1), returned (12),
/// cancelled (32).
const FINAL_CARRIER_STATUSES: [i32; 3] = [1, 12, 32];

const LIMITS: Limits = Limits {
    register_batch: MAX_ROWS_PER_REGISTRATION,
    lookup_batch: MAX_IN_VALUES,
    page_size: MAX_SEARCH_LIMIT as usize,
};

/// A COMMERCE ROBO order in wmslink's terms.
pub(crate) fn to_port(order: RoboOrder) -> WmsOrder {
    WmsOrder {
        processing: order.status_id == PROCESSING_STATUS_ID,
        cancelled: order.is_cancelled(),
        shipped: order.is_shipped(),
        carrier: order.shipping_status_id.map(|id| CarrierStatus {
            id,
            name: shipping_status_name(id).unwrap_or_default().to_owned(),
            is_final: FINAL_CARRIER_STATUSES.contains(&id),
        }),
        order_id: order.order_id,
        order_no: order.order_no,
        status_id: order.status_id,
        status_name: order.status_name,
        tracking_code: order.tracking_code,
        shipping_date: order.shipping_date,
        updated_at: order.update_date.with_timezone(&Utc),
    }
}

fn page_of(page: SearchPage, cursor: PageCursor) -> Page {
    let returned = page.orders.len();
    let next = cursor
        .0
        .saturating_add(u32::try_from(returned).unwrap_or(u32::MAX));
    // Without a `total` the count is unknown: a full page means there may be more.
    let more =
        returned >= LIMITS.page_size && page.total.is_none_or(|total| u64::from(next) < total);
    Page {
        orders: page.orders.into_iter().map(to_port).collect(),
        next: more.then_some(PageCursor(next)),
    }
}

fn registration(order_no: String, outcome: RowOutcome) -> Registration {
    let outcome = match outcome {
        RowOutcome::Registered { order_id } => RegistrationOutcome::Registered { order_id },
        RowOutcome::Rejected { code, message, .. } if code == DUPLICATE => {
            RegistrationOutcome::AlreadyRegistered { code, message }
        }
        RowOutcome::Rejected { code, message, .. } => {
            RegistrationOutcome::Refused { code, message }
        }
    };
    Registration { order_no, outcome }
}

impl WmsClient {
    async fn search_page(&self, query: SearchQuery, cursor: PageCursor) -> Result<Page, WmsError> {
        let query = query.limit(MAX_SEARCH_LIMIT).offset(cursor.0);
        Ok(page_of(self.search(&query).await?, cursor))
    }
}

#[async_trait]
impl Wms for WmsClient {
    fn limits(&self) -> Limits {
        LIMITS
    }

    fn build_instruction(
        &self,
        order: &Order,
        mappings: &DetailSettings,
    ) -> Result<Instruction, BuildError> {
        let row = build_row(order, mappings)?;
        Ok(Instruction::new(
            row.order_no.clone(),
            summarize(&row),
            InstructionBody::CommerceRobo(row),
        ))
    }

    async fn register(&self, batch: &[Instruction]) -> Result<Vec<Registration>, WmsError> {
        let rows: Vec<&ShipmentInstruction> = batch
            .iter()
            .map(|instruction| {
                let InstructionBody::CommerceRobo(row) = &instruction.body;
                row
            })
            .collect();
        let results = self.register_rows(&rows).await?;
        Ok(results
            .into_iter()
            .map(|result| registration(result.order_no, result.outcome))
            .collect())
    }

    async fn cancel(&self, order_id: i64) -> Result<CancelOutcome, WmsError> {
        match self.cancel_order(order_id).await {
            Ok(()) => Ok(CancelOutcome::Cancelled),
            Err(WmsError::Rejected { code, message, .. }) if code == NOT_CANCELLABLE => {
                Ok(CancelOutcome::NotCancellable { code, message })
            }
            Err(WmsError::Rejected { code, message, .. }) => {
                Ok(CancelOutcome::Refused { code, message })
            }
            Err(err) => Err(err),
        }
    }

    async fn get(&self, order_id: i64) -> Result<WmsOrder, WmsError> {
        self.get_order(order_id).await.map(to_port)
    }

    fn past_cancel(&self, order: &WmsOrder) -> bool {
        order.shipped || is_cancel_refused_status(order.status_id)
    }

    async fn lookup(&self, order_nos: &[String], page: PageCursor) -> Result<Page, WmsError> {
        let query = SearchQuery::new().order_no_in(order_nos.iter().cloned());
        self.search_page(query, page).await
    }

    async fn changed_since(
        &self,
        since: DateTime<Utc>,
        page: PageCursor,
    ) -> Result<Page, WmsError> {
        self.search_page(SearchQuery::new().update_date_gte(since), page)
            .await
    }

    fn describe(&self, exchange: Exchange<'_>) -> String {
        match exchange {
            Exchange::Register { rows } => format!("POST /order/ (batch of {rows} rows)"),
            Exchange::Cancel { order_id } => format!("GET /order_cancel/{order_id}"),
            Exchange::Get { order_id } => format!("GET /order/{order_id}"),
            Exchange::Lookup { order_nos } => format!(
                "GET /order/search order_no-in ({order_nos} order numbers, {} call(s))",
                order_nos.div_ceil(MAX_IN_VALUES)
            ),
            Exchange::CancelState(order) if order.cancelled => "cancel_flag 1".to_owned(),
            Exchange::CancelState(order) => format!(
                "cancel_flag 0 (status {} {})",
                order.status_id, order.status_name
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::NaiveDate;

    fn robo(status_id: i32, cancel_flag: u8, shipped_flag: u8, carrier: Option<i32>) -> RoboOrder {
        serde_json::from_value(serde_json::json!({
            "order_id": 7, "order_no": "A-1", "status_id": status_id,
            "status_name": super::super::types::status_name(status_id).unwrap_or(""),
            "cancel_flag": cancel_flag, "shipped_flag": shipped_flag,
            "shipping_status_id": carrier, "tracking_code": carrier.map(|_| "T-1"),
            "shipping_date": carrier.map(|_| "2026-11-29"),
            "update_date": "2026-11-28T10:15:00+09:00"
        }))
        .unwrap()
    }

    #[test]
    fn statuses_become_meanings_and_stay_visible_as_data() {
        let waiting = to_port(robo(50, 0, 0, None));
        assert_eq!(
            (waiting.status_id, waiting.status_name.as_str()),
            (50, "出荷待ち")
        );
        assert!(!waiting.processing && !waiting.cancelled && !waiting.shipped);
        assert_eq!(waiting.carrier, None);
        assert_eq!(
            waiting.updated_at,
            DateTime::parse_from_rfc3339("2026-11-28T01:15:00Z").unwrap()
        );

        let processing = to_port(robo(20, 0, 0, None));
        assert!(processing.processing);
        assert_eq!(processing.status_name, "処理中");

        assert!(to_port(robo(50, 1, 0, None)).cancelled);

        let shipped = to_port(robo(100, 0, 1, Some(3)));
        assert!(shipped.shipped);
        assert_eq!(
            shipped.carrier,
            Some(CarrierStatus {
                id: 3,
                name: "配達中".into(),
                is_final: false
            })
        );
        assert_eq!(shipped.tracking_code.as_deref(), Some("T-1"));
        assert_eq!(shipped.shipping_date, NaiveDate::from_ymd_opt(2026, 11, 29));
        for id in [1, 12, 32] {
            let carrier = to_port(robo(100, 0, 1, Some(id))).carrier.unwrap();
            assert!(carrier.is_final, "{id}");
        }
        let undocumented = to_port(robo(100, 0, 1, Some(77))).carrier.unwrap();
        assert_eq!(
            (undocumented.name.as_str(), undocumented.is_final),
            ("", false)
        );
    }

    #[test]
    fn a_duplicate_is_told_apart_from_other_refusals() {
        let rejected = |code: &str| RowOutcome::Rejected {
            code: code.into(),
            message: "m".into(),
            details: vec![],
        };
        assert_eq!(
            registration("A".into(), RowOutcome::Registered { order_id: 5 }).outcome,
            RegistrationOutcome::Registered { order_id: 5 }
        );
        assert_eq!(
            registration("A".into(), rejected("E_DUPLICATE")).outcome,
            RegistrationOutcome::AlreadyRegistered {
                code: "E_DUPLICATE".into(),
                message: "m".into()
            }
        );
        assert_eq!(
            registration("A".into(), rejected("E_REQUIRED")).outcome,
            RegistrationOutcome::Refused {
                code: "E_REQUIRED".into(),
                message: "m".into()
            }
        );
    }

    #[test]
    fn pages_go_on_only_while_full_and_short_of_the_total() {
        let orders = |n: usize| SearchPage {
            orders: (0..n).map(|_| robo(50, 0, 0, None)).collect(),
            total: Some(450),
        };
        let first = page_of(orders(200), PageCursor::FIRST);
        assert_eq!(first.next, Some(PageCursor(200)));
        let last = page_of(orders(50), PageCursor(400));
        assert_eq!(last.next, None);
        let exact = SearchPage {
            orders: (0..200).map(|_| robo(50, 0, 0, None)).collect(),
            total: Some(400),
        };
        assert_eq!(page_of(exact, PageCursor(200)).next, None);
        assert_eq!(page_of(orders(0), PageCursor::FIRST).next, None);
    }

    #[test]
    fn without_a_total_pages_go_on_until_a_short_one() {
        let orders = |n: usize| SearchPage {
            orders: (0..n).map(|_| robo(50, 0, 0, None)).collect(),
            total: None,
        };
        assert_eq!(
            page_of(orders(200), PageCursor::FIRST).next,
            Some(PageCursor(200))
        );
        assert_eq!(
            page_of(orders(200), PageCursor(200)).next,
            Some(PageCursor(400))
        );
        assert_eq!(page_of(orders(199), PageCursor(400)).next, None);
    }
}

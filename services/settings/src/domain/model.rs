//! The settings of one shop as the rules see them (S1, S3), the order-status catalog's entries,
//! and [`Blocker`], the reason a request cannot be carried out in the current state.

use serde::{Deserialize, Serialize};
use wmslink_proto::settings::v1 as pb;

/// S1: the WMS product. Stored as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WmsKind {
    CommerceRobo,
}

impl WmsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CommerceRobo => "commerce_robo",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "commerce_robo" => Some(Self::CommerceRobo),
            _ => None,
        }
    }

    pub fn to_proto(self) -> pb::WmsKind {
        match self {
            Self::CommerceRobo => pb::WmsKind::CommerceRobo,
        }
    }
}

/// S3 ④.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataTargets {
    pub shipment_instructions: bool,
    pub cancellations: bool,
    pub shipment_results: bool,
}

/// S3 ⑩ ⑪.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMapping {
    pub payment_method_code: String,
    pub wms_payment_method_id: i64,
    /// 0: no override.
    pub delivery_company_id: i64,
}

/// S3 ⑫ ⑬.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeFieldMapping {
    pub slot: u32,
    pub cart_field: String,
}

/// The detail settings of S1 and S3, valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detail {
    pub wms_kind: WmsKind,
    /// Normalised: no trailing slash.
    pub endpoint_url: String,
    pub data_targets: DataTargets,
    pub target_status_codes: Vec<String>,
    /// 0: not set yet.
    pub shipper_id: i64,
    pub delivery_method_id: i64,
    pub sync_period_days: u32,
    pub robot_id: i64,
    pub payment_mappings: Vec<PaymentMapping>,
    pub header_free_fields: Vec<FreeFieldMapping>,
    pub line_free_fields: Vec<FreeFieldMapping>,
    /// Multi-channel accounts: the order-number prefix of this shop's WMS orders ("" = all).
    pub wms_order_no_prefix: String,
}

impl Detail {
    pub fn to_proto(&self) -> pb::DetailSettings {
        let free = |fields: &[FreeFieldMapping]| {
            fields
                .iter()
                .map(|f| pb::FreeFieldMapping {
                    slot: f.slot,
                    cart_field: f.cart_field.clone(),
                })
                .collect()
        };
        pb::DetailSettings {
            wms_kind: self.wms_kind.to_proto() as i32,
            endpoint_url: self.endpoint_url.clone(),
            data_targets: Some(pb::DataTargets {
                shipment_instructions: self.data_targets.shipment_instructions,
                cancellations: self.data_targets.cancellations,
                shipment_results: self.data_targets.shipment_results,
            }),
            target_status_codes: self.target_status_codes.clone(),
            shipper_id: self.shipper_id,
            delivery_method_id: self.delivery_method_id,
            sync_period_days: self.sync_period_days,
            robot_id: self.robot_id,
            payment_mappings: self
                .payment_mappings
                .iter()
                .map(|m| pb::PaymentMapping {
                    payment_method_code: m.payment_method_code.clone(),
                    wms_payment_method_id: m.wms_payment_method_id,
                    delivery_company_id: m.delivery_company_id,
                })
                .collect(),
            header_free_fields: free(&self.header_free_fields),
            wms_order_no_prefix: self.wms_order_no_prefix.clone(),
            line_free_fields: free(&self.line_free_fields),
        }
    }
}

/// The kind of a cart order status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    Open,
    Cancelled,
    Completed,
}

impl StatusKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Cancelled => "cancelled",
            Self::Completed => "completed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "open" => Some(Self::Open),
            "cancelled" => Some(Self::Cancelled),
            "completed" => Some(Self::Completed),
            _ => None,
        }
    }

    pub fn from_proto(raw: i32) -> Option<Self> {
        match pb::OrderStatusKind::try_from(raw).ok()? {
            pb::OrderStatusKind::Open => Some(Self::Open),
            pb::OrderStatusKind::Cancelled => Some(Self::Cancelled),
            pb::OrderStatusKind::Completed => Some(Self::Completed),
            pb::OrderStatusKind::Unspecified => None,
        }
    }

    pub fn to_proto(self) -> pb::OrderStatusKind {
        match self {
            Self::Open => pb::OrderStatusKind::Open,
            Self::Cancelled => pb::OrderStatusKind::Cancelled,
            Self::Completed => pb::OrderStatusKind::Completed,
        }
    }
}

/// One entry of the shop's order-status catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderStatus {
    pub code: String,
    pub display_name: String,
    pub kind: StatusKind,
}

impl OrderStatus {
    pub fn to_proto(&self) -> pb::OrderStatus {
        pb::OrderStatus {
            code: self.code.clone(),
            display_name: self.display_name.clone(),
            kind: self.kind.to_proto() as i32,
        }
    }
}

/// The status of the catalog with this code.
pub fn find_status<'a>(catalog: &'a [OrderStatus], code: &str) -> Option<&'a OrderStatus> {
    catalog.iter().find(|status| status.code == code)
}

/// Why a request cannot be carried out in the current state (FAILED_PRECONDITION).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// `CONNECTION_CHECK`, `INCOMPLETE`, `STATUS_IN_USE`, `ENABLED`.
    pub kind: &'static str,
    /// The setting concerned, e.g. `detail.shipper_id`.
    pub subject: String,
    pub description: String,
}

impl Blocker {
    pub(crate) fn new(
        kind: &'static str,
        subject: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            subject: subject.into(),
            description: description.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_text() {
        for kind in [
            StatusKind::Open,
            StatusKind::Cancelled,
            StatusKind::Completed,
        ] {
            assert_eq!(StatusKind::parse(kind.as_str()), Some(kind));
            assert_eq!(StatusKind::from_proto(kind.to_proto() as i32), Some(kind));
        }
        assert_eq!(WmsKind::parse("commerce_robo"), Some(WmsKind::CommerceRobo));
    }
}

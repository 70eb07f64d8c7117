//! I7: the access key appears in no log line, even at TRACE.

use wmslink_proto::orders::v1::ShippingStatus;
use wmslink_testkit::LogCapture;

use crate::helpers::*;

#[tokio::test(flavor = "current_thread")]
async fn the_access_key_is_never_logged() {
    let (logs, _guard) = LogCapture::install();
    let app = spawn_app_with(|config| config.wms.request_timeout_ms = 1_000).await;
    let shop = app.shop().await;
    let no = unique_order_no();
    app.status_changed(&order(&shop, &no, "paid", 1)).await;
    app.wait_for(&shop, &no, ShippingStatus::Sent).await;
    app.status_changed(&order(&shop, &no, "cancel", 2)).await;
    app.wait_for(&shop, &no, ShippingStatus::Cancelled).await;

    let text = logs.contents();
    assert!(
        text.contains("registering shipment instructions"),
        "the dispatcher's logs are captured"
    );
    assert!(text.contains("wms_call"), "WMS calls are logged");
    assert!(
        !text.contains(&shop.key),
        "the access key leaked into the logs"
    );
}

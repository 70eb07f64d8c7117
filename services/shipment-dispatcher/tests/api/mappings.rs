//! S3 ⑥–⑬: every mapping lands in the row the WMS stored; unbuildable orders go to ERROR
//! before any call, and the rest of their batch still goes.

use wmslink_proto::orders::v1::ShippingStatus;

use crate::helpers::*;

#[tokio::test]
async fn every_mapping_lands_in_the_wms_row() {
    let app = spawn_app().await;
    let shop = app.shop().await;
    let cod = unique_order_no();
    let credit = unique_order_no();
    app.status_changed(&order(&shop, &cod, "paid", 1)).await;
    let mut by_card = order(&shop, &credit, "ready", 1);
    by_card.payment_method_code = "credit".into();
    app.status_changed(&by_card).await;
    app.wait_for(&shop, &cod, ShippingStatus::Sent).await;
    app.wait_for(&shop, &credit, ShippingStatus::Sent).await;

    let (_, row) = app.wms_row(&shop, &cod);
    // ⑨ ⑥ ⑦
    assert_eq!(row["order_no"], cod.as_str());
    assert_eq!(row["robot_id"], 12);
    assert_eq!(row["shipper_id"], 3);
    assert_eq!(row["delivery_method_id"], 2);
    // ⑩ ⑪: cash on delivery goes with its own carrier.
    assert_eq!(row["payment_method_id"], 7);
    assert_eq!(row["delivery_company_id"], 5);
    // ⑫: header free fields from their cart fields.
    assert_eq!(row["free_fields"]["free1"], "お誕生日おめでとう");
    assert_eq!(row["free_fields"]["free2"], "hanako@example.com");
    assert_eq!(row["free_fields"]["free10"], "6330");
    // ⑬: line free fields from each line.
    assert_eq!(row["details"][0]["free_fields"]["free1"], "red");
    assert_eq!(row["details"][0]["free_fields"]["free3"], "TS-RED-M");
    assert_eq!(row["details"][1]["free_fields"]["free1"], "navy");
    assert_eq!(row["details"][1]["free_fields"]["free3"], "SOCKS-1");
    // Lines, addresses, amounts, dates, note.
    assert_eq!(row["details"][0]["sku"], "TS-RED-M");
    assert_eq!(row["details"][0]["name"], "Tシャツ");
    assert_eq!(row["details"][0]["quantity"], 2);
    assert_eq!(row["details"][0]["unit_price"], 2700);
    assert_eq!(row["orderer"]["name"], "山田太郎");
    assert_eq!(row["orderer"]["email"], "taro@example.com");
    assert_eq!(row["orderer"]["pref"], "東京都");
    assert_eq!(row["orderer"]["tel"], "03-1234-5678");
    assert_eq!(row["shipping"]["name"], "山田花子");
    assert_eq!(row["shipping"]["address2"], "101号室");
    assert_eq!(row["shipping"]["delivery_date"], "2026-12-24");
    assert_eq!(row["shipping"]["delivery_time"], "14-16");
    assert_eq!(row["product_total"], 5400);
    assert_eq!(row["shipping_fee"], 600);
    assert_eq!(row["cod_fee"], 330);
    assert_eq!(row["discount"], 0);
    assert_eq!(row["tax_total"], 545);
    assert_eq!(row["pay_total"], 6330);
    assert_eq!(row["note"], "置き配希望");
    let order_date = row["order_date"].as_str().expect("order_date");
    assert!(order_date.ends_with("+09:00"), "{order_date}");

    // A payment method without a carrier override sends none.
    let (_, row) = app.wms_row(&shop, &credit);
    assert_eq!(row["payment_method_id"], 1);
    assert!(
        row.get("delivery_company_id").is_none_or(|v| v.is_null()),
        "{row}"
    );
}

#[tokio::test]
async fn unbuildable_orders_go_to_error_naming_what_is_missing_and_the_batch_still_goes() {
    let app = spawn_app_with(without_sweeps).await;
    let shop = app.shop_with(full_detail(), false).await;
    let good = app.publish_orders(&shop, 3, "paid").await;
    let unmapped = unique_order_no();
    let mut bank = order(&shop, &unmapped, "paid", 1);
    bank.payment_method_code = "bank_transfer".into();
    app.status_changed(&bank).await;
    let missing = unique_order_no();
    let mut no_gift = order(&shop, &missing, "paid", 1);
    no_gift.extra.clear();
    no_gift.lines[1].options.clear();
    app.status_changed(&no_gift).await;
    for no in good.iter().chain([&unmapped, &missing]) {
        app.wait_for(&shop, no, ShippingStatus::NotSent).await;
    }

    app.set_enabled(&shop, true).await;
    let answer = run_dispatch(&app.operator, &shop.id).await.expect("run");
    assert_eq!(
        (answer.queued, answer.sent, answer.errors),
        (5, 3, 2),
        "{answer:?}"
    );

    let (shipment, history) = app.get(&shop, &unmapped).await.expect("shipment");
    assert_eq!(shipment.shipping_status(), ShippingStatus::Error);
    assert!(
        shipment
            .last_error
            .contains("payment method 'bank_transfer' has no mapping"),
        "{shipment:?}"
    );
    assert!(
        !history.iter().any(|h| h.kind == "wms_call"),
        "no WMS call for it"
    );

    let (shipment, _) = app.get(&shop, &missing).await.expect("shipment");
    assert_eq!(shipment.shipping_status(), ShippingStatus::Error);
    assert!(
        shipment.last_error.contains("extra.gift_message"),
        "{shipment:?}"
    );
    assert!(shipment.last_error.contains("line 2"), "{shipment:?}");
    assert!(
        shipment.last_error.contains("options.color"),
        "{shipment:?}"
    );

    app.wait_for_all(&shop, &good, ShippingStatus::Sent).await;
    assert!(app.wms_orders(&shop, &unmapped).is_empty());
    assert!(app.wms_orders(&shop, &missing).is_empty());
    assert_eq!(
        app.register_calls(&shop),
        1,
        "the three buildable rows went in one call"
    );
}

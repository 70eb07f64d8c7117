//! NATS authentication by credentials file (operator/JWT mode): a nats-server of the test's own
//! trusting an operator made for the test, with one account preloaded; a service with
//! `nats.credentials_file` (the user's JWT and seed, as `nsc` writes them) connects, a user of
//! an account the operator did not sign is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;
use nkeys::KeyPair;
use wmslink_platform::nats::{self, NatsConfig};
use wmslink_testkit::{PrivateNats, unique};

/// A JWT of `claims` signed by `issuer` (the `ed25519-nkey` algorithm of NATS).
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"jti":"{}","iat":{now},"iss":"{}","name":"{name}","sub":"{subject}","nats":{nats}}}"#,
        unique("").to_ascii_uppercase(),
        issuer.public_key()
    ));
    let signed = format!("{header}.{claims}");
    let signature = URL_SAFE_NO_PAD.encode(issuer.sign(signed.as_bytes()).unwrap());
    format!("{signed}.{signature}")
}

fn account_jwt(operator: &KeyPair, account: &KeyPair) -> String {
    jwt(
        operator,
        &account.public_key(),
        "WMSLINK",
        r#"{"limits":{"subs":-1,"data":-1,"payload":-1,"imports":-1,"exports":-1,"wildcards":true,"conn":-1,"leaf":-1},"default_permissions":{"pub":{},"sub":{}},"type":"account","version":2}"#,
    )
}

/// A credentials file of `user` in `account`.
fn creds(account: &KeyPair, user: &KeyPair) -> String {
    let token = jwt(
        account,
        &user.public_key(),
        "order-events",
        r#"{"pub":{},"sub":{},"subs":-1,"data":-1,"payload":-1,"type":"user","version":2}"#,
    );
    format!(
        "-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
        user.seed().unwrap()
    )
}

#[tokio::test]
async fn a_service_connects_with_its_credentials_file_and_a_foreign_user_does_not() {
    wmslink_platform::install_crypto_provider();
    let operator = KeyPair::new_operator();
    let account = KeyPair::new_account();
    let user = KeyPair::new_user();
    let foreign_account = KeyPair::new_account();
    // JetStream (which the test server runs) needs a system account.
    let system = KeyPair::new_account();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "wmslink-test",
        r#"{"type":"operator","version":2}"#,
    );
    let server = PrivateNats::start(
        &format!(
            "operator: {operator_jwt}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {}\n  {}: {}\n}}",
            system.public_key(),
            account.public_key(),
            account_jwt(&operator, &account),
            system.public_key(),
            account_jwt(&operator, &system),
        ),
        &[
            ("user.creds", creds(&account, &user).as_bytes()),
            ("foreign.creds", creds(&foreign_account, &user).as_bytes()),
        ],
        &[],
    )
    .await
    .unwrap();

    let client = nats::connect(&NatsConfig {
        url: server.url(),
        credentials_file: server.dir.join("user.creds").display().to_string(),
        ..NatsConfig::default()
    })
    .await
    .unwrap_or_else(|err| panic!("{err}\n{}", server.log()));
    // A round trip through the server proves the connection was accepted.
    let subject = unique("credentials.");
    let mut subscription = client.subscribe(subject.clone()).await.unwrap();
    client.publish(subject, "hello".into()).await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(20), subscription.next())
        .await
        .unwrap_or_else(|_| panic!("no round trip as the credentials' user\n{}", server.log()))
        .expect("a message");
    assert_eq!(message.payload.as_ref(), b"hello");

    let foreign =
        async_nats::ConnectOptions::with_credentials_file(server.dir.join("foreign.creds"))
            .await
            .unwrap()
            .connect(server.url())
            .await;
    assert!(
        foreign.is_err(),
        "a user of an account the operator did not sign connected"
    );
    let anonymous = async_nats::ConnectOptions::new()
        .connect(server.url())
        .await;
    assert!(anonymous.is_err(), "connected without credentials");

    // An unreadable file fails before connecting, naming the file.
    let missing = nats::connect(&NatsConfig {
        url: server.url(),
        credentials_file: server.dir.join("absent.creds").display().to_string(),
        ..NatsConfig::default()
    })
    .await
    .expect_err("a missing credentials file");
    assert!(missing.to_string().contains("absent.creds"), "{missing}");
}

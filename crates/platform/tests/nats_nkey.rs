//! NATS authentication by nkey: a nats-server of the test's own that knows its users only by
//! their nkey's public key. A service with `nats.nkey_seed_file` connects and uses its streams;
//! without a seed, or with the seed of a user the server does not know, it is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use wmslink_platform::nats::{self, NatsConfig, StreamKind, Subjects, ensure_streams};
use wmslink_testkit::PrivateNats;

#[tokio::test]
async fn a_service_connects_with_its_nkey_seed_and_no_one_else_does() {
    wmslink_platform::install_crypto_provider();
    let user = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let server = PrivateNats::start(
        &format!(
            "authorization {{\n  users = [ {{ nkey: \"{}\" }} ]\n}}",
            user.public_key()
        ),
        &[
            ("user.nk", format!("{}\n", user.seed().unwrap()).as_bytes()),
            ("stranger.nk", stranger.seed().unwrap().as_bytes()),
        ],
        &[],
    )
    .await
    .unwrap();
    let config = NatsConfig {
        url: server.url(),
        nkey_seed_file: server.dir.join("user.nk").display().to_string(),
        ..NatsConfig::default()
    };

    let client = nats::connect(&config)
        .await
        .unwrap_or_else(|err| panic!("{err}\n{}", server.log()));
    let js = async_nats::jetstream::new(client);
    ensure_streams(&js, &Subjects::new("").unwrap(), &[StreamKind::Orders], 1)
        .await
        .unwrap();
    js.publish("orders.shop-a.status_changed", "event".into())
        .await
        .unwrap()
        .await
        .expect("stored as the nkey user");

    let anonymous = async_nats::ConnectOptions::new()
        .connect(server.url())
        .await;
    assert!(anonymous.is_err(), "connected without an nkey");
    // (`nats::connect` retries its first connection in the background, so the refusal is
    // seen with the client's options as it uses them, without that retry.)
    let refused = async_nats::ConnectOptions::with_nkey(stranger.seed().unwrap())
        .connect(server.url())
        .await
        .expect_err("an unknown nkey is refused");
    assert!(
        refused.to_string().to_lowercase().contains("authorization"),
        "{refused}"
    );
    // The seed never appears in an error.
    let missing = nats::connect(&NatsConfig {
        nkey_seed_file: server.dir.join("absent.nk").display().to_string(),
        ..config.clone()
    })
    .await
    .expect_err("a missing seed file");
    assert!(missing.to_string().contains("absent.nk"), "{missing}");
    assert!(!missing.to_string().contains(&user.seed().unwrap()));
    let not_a_seed = server.dir.join("not-a-seed.nk");
    std::fs::write(&not_a_seed, user.public_key()).unwrap();
    let wrong = nats::connect(&NatsConfig {
        nkey_seed_file: not_a_seed.display().to_string(),
        ..config.clone()
    })
    .await
    .expect_err("a file without a user seed");
    assert!(!wrong.to_string().contains(&user.public_key()), "{wrong}");
}

//! A service that reads flags through OpenFeature, with Pulseplane as the
//! provider.
//!
//!   cargo run -p pulseplane-sdk --features openfeature --example openfeature -- \
//!       http://127.0.0.1:7401 prod <sdk key> new-checkout
//!
//! It starts within the init timeout whether or not a node answers, then
//! prints the flag's details for two users every two seconds: value,
//! variant, reason (STALE while the data is not fresh from a node) and the
//! environment version.

use std::time::Duration;

use open_feature::{EvaluationContext, OpenFeature};
use pulseplane_sdk::Client;
use pulseplane_sdk::openfeature::PulseplaneProvider;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let endpoint = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:7401".into());
    let env = args.next().unwrap_or_else(|| "prod".into());
    let token = args
        .next()
        .or_else(|| std::env::var("PULSEPLANE_TOKEN").ok())
        .unwrap_or_default();
    let flag = args.next().unwrap_or_else(|| "new-checkout".into());

    let client = match Client::builder(&env)
        .endpoints([endpoint.as_str()])
        .sdk_key(&token)
        .init_timeout(Duration::from_secs(2))
        .start()
        .await
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bad configuration: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "started: {:?}, version {}",
        client.status(),
        client.version()
    );

    let mut api = OpenFeature::singleton_mut().await;
    api.set_provider(PulseplaneProvider::new(client)).await;
    let flags = api.create_client();
    drop(api);

    loop {
        for (user, country) in [("user-1", "NL"), ("user-2", "DE")] {
            let ctx = EvaluationContext::default()
                .with_targeting_key(user)
                .with_custom_field("country", country);
            match flags.get_bool_details(&flag, Some(&ctx), None).await {
                Ok(d) => println!(
                    "{user} ({country}): {} variant={:?} reason={:?} env_version={:?}",
                    d.value,
                    d.variant,
                    d.reason,
                    d.flag_metadata.values.get("env_version")
                ),
                Err(e) => println!("{user} ({country}): default false ({})", e.code),
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

//! A service that reads one flag through the SDK.
//!
//!   cargo run -p pulseplane-sdk --example basic -- http://127.0.0.1:7401 prod <token> new-checkout
//!
//! It starts within the init timeout whether or not a node answers, prints
//! where its data comes from, then prints the flag's value for a few users
//! every two seconds, and every change of the flag as it arrives.

use std::time::Duration;

use pulseplane_sdk::{Client, Context};

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
        .cache_file(std::env::temp_dir().join(format!("pulseplane-example-{env}.json")))
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
    client.on_change(Some(&flag), |change| {
        println!(
            "{} changed: {:?} -> {:?} (version {} -> {})",
            change.flag, change.old_value, change.new_value, change.old_version, change.new_version
        );
    });
    for round in 0..30 {
        for user in ["user-1", "user-2", "user-3"] {
            let d = client.bool_details(&flag, &Context::new(user).with("country", "NL"), false);
            println!(
                "round {round}: {user}: {} ({:?}, version {})",
                d.value, d.reason, d.env_version
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

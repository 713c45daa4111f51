//! The short version of the sustained-load run (`vettid-load` does 60 s and more): a fixed rate for
//! a few seconds, every request answered without error within its deadline.

use std::time::Duration;

use vettid_tests::load::{run, LoadSpec};
use vettid_tests::{System, SystemOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_mix_for_five_seconds_has_no_errors() {
    let sys = System::start(SystemOptions::default());
    let spec = LoadSpec {
        duration: Duration::from_secs(5),
        rate: 200,
        window: Duration::from_secs(1),
        deadline: Duration::from_secs(5),
        vault: None,
    };
    let report = run(&sys, &spec).await;
    eprintln!("{}", report.markdown());
    assert_eq!(report.errors, 0, "{}", report.markdown());
    assert!(report.sent >= 900, "sent {}", report.sent);
    assert_eq!(report.ok, report.sent);
    assert!(report.memory.len() >= 4, "memory sampled every second");
}

/// The same with vault users alongside: updates and reads (values checked) and warm unlocks, every
/// one answered with success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mix_with_vault_operations_has_no_errors() {
    let sys = System::start(SystemOptions {
        kms: Some(vettid_tests::kms::KmsOptions::default()),
        ..SystemOptions::default()
    });
    let spec = LoadSpec {
        duration: Duration::from_secs(5),
        rate: 100,
        window: Duration::from_secs(1),
        deadline: Duration::from_secs(5),
        vault: Some(vettid_tests::load::VaultMix {
            users: 3,
            rate: 30,
            unlock_every: 20,
        }),
    };
    let report = run(&sys, &spec).await;
    eprintln!("{}", report.markdown());
    assert_eq!(report.errors, 0, "{}", report.markdown());
    for family in ["secrets.update", "secrets.retrieve", "pin.unlock"] {
        let (lat, errors) = &report.families[family];
        assert!(
            !lat.is_empty() && *errors == 0,
            "{family}: {}",
            report.markdown()
        );
    }
}

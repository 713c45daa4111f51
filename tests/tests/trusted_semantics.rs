//! Which DynamoDB stand-in the trusted store runs on in dev and tests: dynalite (behind
//! `scripts/lib/dynalite-tls.js`) or moto's DynamoDB. Both are driven with `aws-sdk-dynamodb`, over
//! TLS with our dev CA, through exactly the calls the enclave makes (`enclave/src/trusted`):
//!
//! - `PutItem` conditional on `attribute_not_exists(pk)` (create; swap from nothing),
//! - `UpdateItem` `SET #rev = :new, #body = :body` conditional on `#rev = :expected` (swap),
//! - `DeleteItem` conditional on `attribute_exists(pk)` with `ReturnValues=ALL_OLD` (take),
//! - consistent `GetItem`,
//! - a failed condition is `ConditionalCheckFailedException` and changes nothing,
//! - `TableName` is the table's full ARN, and an ARN of another account is not found.
//!
//! Both pass all of it; what decides is [`only_dynalite_keeps_the_table_across_a_restart`]: a dev
//! system restart is a fleet restart, not an AWS one, so the table must survive it, and moto keeps
//! everything in memory. docs/ARCHITECTURE.md ("The trusted store's stand-in") records the finding.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;
use vettid_tests::dynamo::{self, Dynamo, HOST};
use vettid_tests::{free_port, Child};

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn b(v: &[u8]) -> AttributeValue {
    AttributeValue::B(Blob::new(v.to_vec()))
}

fn is_ccf<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(
    e: &aws_sdk_dynamodb::error::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> bool {
    use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
    e.code() == Some("ConditionalCheckFailedException")
}

async fn get(c: &Client, table: &str, key: &str) -> Option<(u64, Vec<u8>)> {
    let out = c
        .get_item()
        .table_name(table)
        .key("pk", s(key))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem");
    out.item.map(|item| {
        let rev = item["rev"].as_n().unwrap().parse().unwrap();
        let body = item["body"].as_b().unwrap().as_ref().to_vec();
        (rev, body)
    })
}

async fn put_new(c: &Client, table: &str, key: &str, body: &[u8]) -> Result<(), bool> {
    c.put_item()
        .table_name(table)
        .item("pk", s(key))
        .item("rev", n(1))
        .item("body", b(body))
        .item("ttl", n(4_000_000_000))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .map(|_| ())
        .map_err(|e| is_ccf(&e))
}

async fn swap(c: &Client, table: &str, key: &str, expected: u64, body: &[u8]) -> Result<(), bool> {
    c.update_item()
        .table_name(table)
        .key("pk", s(key))
        .update_expression("SET #rev = :new, #body = :body")
        .condition_expression("#rev = :expected")
        .expression_attribute_names("#rev", "rev")
        .expression_attribute_names("#body", "body")
        .expression_attribute_values(":new", n(expected + 1))
        .expression_attribute_values(":expected", n(expected))
        .expression_attribute_values(":body", b(body))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| is_ccf(&e))
}

async fn take(c: &Client, table: &str, key: &str) -> Result<Option<Vec<u8>>, bool> {
    match c
        .delete_item()
        .table_name(table)
        .key("pk", s(key))
        .condition_expression("attribute_exists(pk)")
        .return_values(ReturnValue::AllOld)
        .send()
        .await
    {
        Ok(out) => Ok(out
            .attributes
            .map(|a| a["body"].as_b().unwrap().as_ref().to_vec())),
        Err(e) if is_ccf(&e) => Ok(None),
        Err(e) => {
            eprintln!("DeleteItem: {e:?}");
            Err(false)
        }
    }
}

/// Every semantic the enclave relies on, against `table` (an ARN); `foreign` is the same table
/// name under another account.
async fn check_semantics(backend: &str, c: &Client, table: &str, foreign: &str) {
    // Conditional create: once.
    assert_eq!(put_new(c, table, "v1", b"one").await, Ok(()), "{backend}");
    assert_eq!(
        put_new(c, table, "v1", b"again").await,
        Err(true),
        "{backend}: CCF on exists"
    );
    assert_eq!(
        get(c, table, "v1").await,
        Some((1, b"one".to_vec())),
        "{backend}: failed put changed nothing"
    );
    // Conditional update on rev.
    assert_eq!(swap(c, table, "v1", 1, b"two").await, Ok(()), "{backend}");
    assert_eq!(
        swap(c, table, "v1", 1, b"stale").await,
        Err(true),
        "{backend}: CCF on old rev"
    );
    assert_eq!(
        swap(c, table, "v1", 5, b"future").await,
        Err(true),
        "{backend}: CCF on future rev"
    );
    assert_eq!(
        swap(c, table, "missing", 1, b"x").await,
        Err(true),
        "{backend}: CCF on a missing item"
    );
    assert_eq!(
        get(c, table, "missing").await,
        None,
        "{backend}: failed update created nothing"
    );
    assert_eq!(
        get(c, table, "v1").await,
        Some((2, b"two".to_vec())),
        "{backend}"
    );
    // Two racing swaps from the same rev: exactly one wins.
    let (x, y) = tokio::join!(swap(c, table, "v1", 2, b"x"), swap(c, table, "v1", 2, b"y"));
    assert_eq!(
        [x, y].iter().filter(|r| r.is_ok()).count(),
        1,
        "{backend}: {x:?} {y:?}"
    );
    assert_eq!(get(c, table, "v1").await.map(|i| i.0), Some(3), "{backend}");
    // Take: the body once, then nothing; racing takes give it to one.
    assert_eq!(
        take(c, table, "v1").await.unwrap().map(|b| b.len()),
        Some(1),
        "{backend}"
    );
    assert_eq!(
        take(c, table, "v1").await,
        Ok(None),
        "{backend}: CCF on a second take"
    );
    assert_eq!(get(c, table, "v1").await, None, "{backend}");
    put_new(c, table, "k", b"key").await.unwrap();
    let (x, y) = tokio::join!(take(c, table, "k"), take(c, table, "k"));
    let got: Vec<_> = [x, y].into_iter().filter_map(Result::unwrap).collect();
    assert_eq!(
        got,
        vec![b"key".to_vec()],
        "{backend}: exactly one take gets it"
    );
    // The full ARN names the table; another account's ARN does not reach it.
    let err = c
        .get_item()
        .table_name(foreign)
        .key("pk", s("v1"))
        .consistent_read(true)
        .send()
        .await
        .expect_err("another account's table");
    use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
    assert_eq!(
        err.code(),
        Some("ResourceNotFoundException"),
        "{backend}: {err:?}"
    );
}

fn moto(dir: &Path) -> (Child, u16) {
    let tls = dir.join("tls");
    dynamo::issue_cert(&dir.join("ca"), &tls);
    let port = free_port();
    let mut cmd = Command::new("moto_server");
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string(), "-c"])
        .arg(tls.join("cert.pem"))
        .arg("-k")
        .arg(tls.join("key.pem"));
    let child = Child::spawn("moto_server", cmd, &dir.join("moto.log"));
    assert!(
        vettid_tests::proc::wait_tcp(&format!("127.0.0.1:{port}"), Duration::from_secs(30)),
        "moto_server did not listen: {}",
        child.log()
    );
    (child, port)
}

async fn moto_table(dir: &Path, port: u16, name: &str) -> Client {
    let c = dynamo::client_for(
        &format!("https://{HOST}:{port}"),
        &dir.join("ca/ca.pem"),
        "test",
    );
    dynamo::create_table(&c, name).await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynalite_has_every_semantic_the_enclave_relies_on() {
    let d = Dynamo::shared();
    eprintln!("dynalite (TLS launcher) started in {:?}", d.started_in);
    let table = d.create_table("semantics").await;
    let foreign = "arn:aws:dynamodb:us-east-1:999999999999:table/semantics";
    check_semantics("dynalite", &d.client(), &table, foreign).await;
    // Unknown credentials are refused as AWS refuses them (the enclave's Denied).
    use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
    let err = d
        .client_as("AKIAUNKNOWN")
        .get_item()
        .table_name(&table)
        .key("pk", s("x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnrecognizedClientException"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_has_them_too() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (_moto, port) = moto(dir.path());
    eprintln!("moto_server started in {:?}", started.elapsed());
    let c = moto_table(dir.path(), port, "semantics").await;
    // moto's default account.
    let table = "arn:aws:dynamodb:us-east-1:123456789012:table/semantics";
    let foreign = "arn:aws:dynamodb:us-east-1:999999999999:table/semantics";
    check_semantics("moto", &c, table, foreign).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_dynalite_keeps_the_table_across_a_restart() {
    // dynalite with --path: stop it, start it again on the same data, the item is there.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Dynamo::start(dir.path(), Some(&data));
    let table = d.create_table("persist").await;
    put_new(&d.client(), &table, "v", b"kept").await.unwrap();
    d.child.signal("TERM");
    assert!(
        d.child.wait_exit(Duration::from_secs(10)).is_some(),
        "dynalite stopped"
    );
    let started = Instant::now();
    let again = Dynamo::start_with(
        dir.path(),
        &dir.path().join("dynamodb-tls"),
        Some(&data),
        None,
    );
    eprintln!("dynalite restarted on its data in {:?}", started.elapsed());
    assert_eq!(
        get(&again.client(), &table, "v").await,
        Some((1, b"kept".to_vec()))
    );

    // moto: restarted, the table is gone.
    let mdir = tempfile::tempdir().unwrap();
    let (mut m, port) = moto(mdir.path());
    let c = moto_table(mdir.path(), port, "persist").await;
    let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/persist";
    put_new(&c, arn, "v", b"lost").await.unwrap();
    m.kill();
    let (_m2, port2) = moto(mdir.path());
    let c = dynamo::client_for(
        &format!("https://{HOST}:{port2}"),
        &mdir.path().join("ca/ca.pem"),
        "test",
    );
    let err = c
        .get_item()
        .table_name(arn)
        .key("pk", s("v"))
        .send()
        .await
        .expect_err("moto forgot the table");
    use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
    assert_eq!(err.code(), Some("ResourceNotFoundException"));
}

//! The gateway as a process (`childgraph demo`): the audit log survives SIGKILL under load (every answer a client
//! received has its audit record, and the chain is whole), SIGTERM drains the requests in flight, flushes the audit
//! log and exits 0, its JSON logs carry no child data, and a log nobody reads holds up no answer.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

const USERS: [&str; 4] = ["teacher", "gp", "mch-nurse", "social-worker"];
const CLIENTS: usize = 16;

/// The demo process, killed when dropped if the test ends early.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `childgraph demo` on a free port and returns it with its GraphQL URL, read from what it prints.
fn start(dir: &std::path::Path) -> (Demo, String) {
    start_with(dir, &[], &[])
}

/// The same, with more arguments for `childgraph demo` and variables for its environment.
fn start_with(dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> (Demo, String) {
    start_logging(dir, extra, env, Stdio::null())
}

/// The same, with its logs (stderr) sent where given.
fn start_logging(
    dir: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
    logs: Stdio,
) -> (Demo, String) {
    let mut process = Command::new(env!("CARGO_BIN_EXE_childgraph"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--children",
            "0",
            "--data-dir",
        ])
        .arg(dir)
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(logs)
        .spawn()
        .expect("childgraph demo starts");
    let stdout = process.stdout.take().expect("stdout");
    let demo = Demo(process);
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the demo prints its URL")
            .expect("a line");
        if let Some(url) = line.trim().strip_prefix("GraphiQL:") {
            break url.trim().to_owned();
        }
    };
    // Keep reading so the demo never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (demo, url)
}

/// Sends the demo SIGTERM and waits for it to exit.
async fn stop_with_sigterm(mut demo: Demo) -> std::process::ExitStatus {
    let pid = demo.0.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    tokio::task::spawn_blocking(move || demo.0.wait().expect("wait"))
        .await
        .expect("waiting")
}

/// The demo's audit log once it has stopped: checked whole, then each record's request id, operation and outcome,
/// in order.
async fn audit_after(dir: &std::path::Path) -> Vec<(String, String, String)> {
    let path = dir.join(childgraph::demo::STORE_FILE);
    let store = childgraph::store::Store::open_sqlite(&path)
        .await
        .expect("the store opens");
    let (whole, report) = childgraph::audit_cli::verify(&store).await.expect("verify");
    assert!(whole, "{report}");
    let url = format!("sqlite://{}", path.display());
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("the store file opens");
    sqlx::query_as("SELECT request_id, operation, outcome FROM audit_log ORDER BY seq")
        .fetch_all(&mut db)
        .await
        .expect("audit records")
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    request_id: &str,
    body: Value,
) -> reqwest::Result<(u16, Value)> {
    let response = http
        .post(url)
        .bearer_auth(token)
        .header("x-request-id", request_id)
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_audit_record_of_an_answer_received() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut demo, url) = start(dir.path());
    let key = childgraph::demo_key::DemoKey::load_or_create(dir.path()).expect("the demo's key");
    let tokens: Vec<String> = USERS.iter().map(|u| key.token(u).expect("token")).collect();
    let http = reqwest::Client::new();

    // Every user finds the children the load will view: a search each, within the search quota.
    let mut ids = Vec::new();
    for (family, born) in [("Hartley", "2019-06-14"), ("Fernandes", "2012-09-05")] {
        let search = json!({
            "query": "query($f: String!, $d: Date!) { searchChildren(criteria: {familyName: $f, dateOfBirth: $d}, access: {purpose: SAFEGUARDING}) { matches { child { id } } } }",
            "variables": { "f": family, "d": born },
        });
        let (status, body) = post(&http, &url, &tokens[0], &format!("setup-{family}"), search)
            .await
            .expect("the demo answers");
        assert_eq!(status, 200, "{body:#}");
        ids.push(
            body["data"]["searchChildren"]["matches"][0]["child"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{body:#}"))
                .to_owned(),
        );
    }

    // Clients view the children back to back until the gateway dies under them; each keeps the request ids of the
    // answers it received with child data.
    let killed = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (http, url, killed) = (http.clone(), url.clone(), killed.clone());
        let token = tokens[c % tokens.len()].clone();
        let ids = ids.clone();
        clients.push(tokio::spawn(async move {
            let mut received = Vec::new();
            for n in 0.. {
                let request_id = format!("load-{c}-{n}");
                let view = json!({
                    "query": "query($id: ID!) { child(id: $id, access: {purpose: SAFEGUARDING}) { id name { given } } }",
                    "variables": { "id": ids[n % ids.len()] },
                });
                match post(&http, &url, &token, &request_id, view).await {
                    Ok((200, body)) if body["data"]["child"]["id"].is_string() => {
                        received.push(request_id)
                    }
                    Ok(_) => {}
                    Err(_) if killed.load(Ordering::SeqCst) => break,
                    Err(e) => panic!("the gateway failed before it was killed: {e}"),
                }
            }
            received
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    killed.store(true, Ordering::SeqCst);
    demo.0.kill().expect("SIGKILL");
    demo.0.wait().expect("the demo ends");
    let mut received = Vec::new();
    for client in clients {
        received.extend(client.await.expect("a client"));
    }
    assert!(
        received.len() > 100,
        "only {} answers before the kill",
        received.len()
    );

    // The store, opened after the kill as a restarted gateway would open it.
    let recorded: HashSet<String> = audit_after(dir.path())
        .await
        .into_iter()
        .filter(|(_, operation, outcome)| operation == "view" && outcome == "ok")
        .map(|(request_id, _, _)| request_id)
        .collect();
    let lost: Vec<&String> = received
        .iter()
        .filter(|id| !recorded.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} answers received have no audit record: {:?}",
        lost.len(),
        received.len(),
        &lost[..lost.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_lets_requests_in_flight_finish_flushes_the_audit_and_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Every source takes 400 ms, so requests are in flight when the signal comes.
    let (mut demo, url) = start_with(dir.path(), &["--faults", r#"{"latency_ms": 400}"#], &[]);
    let key = childgraph::demo_key::DemoKey::load_or_create(dir.path()).expect("the demo's key");
    let token = key.token("gp").expect("token");
    let http = reqwest::Client::new();
    let search = json!({
        "query": "{ searchChildren(criteria: {familyName: \"Hartley\", dateOfBirth: \"2019-06-14\"}, access: {purpose: SAFEGUARDING}) { matches { child { id name { given } } } } }",
    });
    let (status, body) = post(&http, &url, &token, "setup", search.clone())
        .await
        .expect("the demo answers");
    assert_eq!(status, 200, "{body:#}");
    let amelia = body["data"]["searchChildren"]["matches"][0]["child"]["id"].clone();
    let in_flight = {
        let (http, url, token, search) = (http.clone(), url.clone(), token.clone(), search.clone());
        tokio::spawn(async move { post(&http, &url, &token, "in-flight", search).await })
    };
    // Clients view the child back to back over kept-alive connections, as a load balancer's would, until the gateway
    // tells them, with `Connection: close` on an answer, that it is stopping: their next request goes to another
    // replica. Each keeps how many answers it had to requests sent before the signal but answered after it, and
    // every request that failed.
    let signalled = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        let (amelia, signalled) = (amelia.clone(), signalled.clone());
        clients.push(tokio::spawn(async move {
            let (mut after_signal, mut cut) = (0, Vec::new());
            for n in 0.. {
                let view = json!({
                    "query": "query($id: ID!) { child(id: $id, access: {purpose: SAFEGUARDING}) { id name { given } } }",
                    "variables": { "id": amelia },
                });
                let sent_before_signal = !signalled.load(Ordering::SeqCst);
                let sent = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("x-request-id", format!("load-{c}-{n}"))
                    .json(&view)
                    .send()
                    .await;
                let response = match sent {
                    Ok(response) => response,
                    Err(e) => {
                        cut.push(format!("{e:?}"));
                        break;
                    }
                };
                let closing = response
                    .headers()
                    .get("connection")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                let body: Value = match response.json().await {
                    Ok(body) => body,
                    Err(e) => {
                        cut.push(format!("{e:?}"));
                        break;
                    }
                };
                assert_eq!(body["data"]["child"]["name"]["given"], "Amelia", "{body:#}");
                if sent_before_signal && signalled.load(Ordering::SeqCst) {
                    after_signal += 1;
                }
                if closing {
                    break;
                }
            }
            (after_signal, cut)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let pid = demo.0.id().to_string();
    signalled.store(true, Ordering::SeqCst);
    let signalled_at = tokio::time::Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    // Stopping, the gateway is no longer ready, so a load balancer sends it no new connections.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ready = http
        .get(url.replace("/graphql", "/readyz"))
        .send()
        .await
        .expect("readiness is still answered while stopping");
    assert_eq!(ready.status(), 503);

    let (status, body) = in_flight
        .await
        .expect("the client task")
        .expect("the request in flight is answered, not cut");
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(
        body["data"]["searchChildren"]["matches"][0]["child"]["name"]["given"], "Amelia",
        "{body:#}"
    );
    let (mut answered_in_drain, mut cut) = (0, Vec::new());
    for client in clients {
        let (after, errors) = client.await.expect("a client");
        answered_in_drain += after;
        cut.extend(errors);
    }
    assert!(cut.is_empty(), "requests cut by the shutdown: {cut:?}");
    assert!(
        answered_in_drain >= CLIENTS / 2,
        "only {answered_in_drain} requests were in flight at the signal"
    );
    // No new connection is taken once the closing second has passed.
    tokio::time::sleep_until(signalled_at + Duration::from_millis(1500)).await;
    assert!(
        post(&http, &url, &token, "late", search).await.is_err(),
        "a request after the signal is not served"
    );
    let exit = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = demo.0.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the demo did not stop within the drain deadline"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("waiting");
    assert!(exit.success(), "exit status {exit}");

    let records = audit_after(dir.path()).await;
    assert!(
        records
            .iter()
            .any(|(id, op, outcome)| id == "in-flight" && op == "search" && outcome == "ok"),
        "{records:?}"
    );
    let last = records.last().expect("records");
    assert_eq!(
        (last.1.as_str(), last.2.as_str()),
        ("gateway.stop", "drained"),
        "{records:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_are_exported_over_otlp_with_a_span_per_source_call_and_no_child_data() {
    use std::sync::Mutex;
    // A collector: it keeps the bodies of the OTLP/HTTP exports it is sent.
    let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let kept = received.clone();
    let collector = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().expect("lock").push(body.to_vec());
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let dir = tempfile::tempdir().expect("temp dir");
    let (demo, url) = start_with(
        dir.path(),
        &[],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    );
    let key = childgraph::demo_key::DemoKey::load_or_create(dir.path()).expect("the demo's key");
    let token = key.token("gp").expect("token");
    let search = json!({
        "query": "{ searchChildren(criteria: {familyName: \"Hartley\", dateOfBirth: \"2019-06-14\"}, access: {purpose: SAFEGUARDING}) { matches { child { id name { given } } } } }",
    });
    let (status, body) = post(&reqwest::Client::new(), &url, &token, "traced", search)
        .await
        .expect("an answer");
    assert_eq!(status, 200, "{body:#}");
    let child_id = body["data"]["searchChildren"]["matches"][0]["child"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body:#}"))
        .to_owned();
    // Stopping flushes the spans not yet sent.
    let exit = stop_with_sigterm(demo).await;
    assert!(exit.success(), "{exit}");

    let bodies = received.lock().expect("lock").concat();
    assert!(!bodies.is_empty(), "no export reached the collector");
    let has = |needle: &[u8]| bodies.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"source_call"), "a span per source call");
    assert!(has(b"request"), "a span per request");
    assert!(has(b"childgraph"), "the service name");
    // Not even the child's gateway id, which the access log names: that log stays out of the traces.
    for child_data in [
        &b"Hartley"[..],
        b"Amelia",
        b"2019-06-14",
        child_id.as_bytes(),
    ] {
        assert!(
            !has(child_data),
            "{} in the traces",
            String::from_utf8_lossy(child_data)
        );
    }
}

/// With `CHILDGRAPH_LOG_FORMAT=json` every line the gateway logs is one JSON object, and none carries child data:
/// not a name, a date of birth, an NHS number or a postcode of the child it answered about, even at debug level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line_and_carry_no_child_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("gateway.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let env = [
        ("CHILDGRAPH_LOG_FORMAT", "json"),
        (
            "CHILDGRAPH_LOG",
            "info,childgraph=debug,childgraph_connectors=debug",
        ),
    ];
    let (demo, url) = start_logging(dir.path(), &[], &env, Stdio::from(log));
    let http = reqwest::Client::new();
    let health = http
        .get(url.replace("/graphql", "/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body"), "ok");

    let key = childgraph::demo_key::DemoKey::load_or_create(dir.path()).expect("the demo's key");
    let search = json!({
        "query": "{ searchChildren(criteria: {familyName: \"Hartley\", dateOfBirth: \"2019-06-14\"}, access: {purpose: SAFEGUARDING}) { matches { child { id name { given family } dateOfBirth identifiers { kind value } address { postcode } carers { name phone } } } } }",
    });
    let mut told = Vec::new();
    for user in ["gp", "teacher"] {
        let token = key.token(user).expect("token");
        let (status, body) = post(&http, &url, &token, &format!("logs-{user}"), search.clone())
            .await
            .expect("an answer");
        assert_eq!(status, 200, "{body:#}");
        told.push(body);
    }
    let child = &told[0]["data"]["searchChildren"]["matches"][0]["child"];
    let id = child["id"].as_str().expect("an id").to_owned();
    let mut secrets: Vec<String> = vec![
        child["name"]["given"].as_str().expect("a name").to_owned(),
        child["name"]["family"].as_str().expect("a name").to_owned(),
        child["dateOfBirth"].as_str().expect("a date").to_owned(),
        child["address"]["postcode"]
            .as_str()
            .expect("a postcode")
            .to_owned(),
    ];
    for identifier in child["identifiers"].as_array().expect("identifiers") {
        secrets.push(identifier["value"].as_str().expect("a value").to_owned());
    }
    for carer in child["carers"].as_array().expect("carers") {
        secrets.extend(carer["name"].as_str().map(str::to_owned));
        secrets.extend(carer["phone"].as_str().map(str::to_owned));
    }

    let exit = stop_with_sigterm(demo).await;
    assert!(exit.success(), "exit status {exit}");

    let text = std::fs::read_to_string(&log_path).expect("the log");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 5, "{text}");
    for line in &lines {
        let object: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(object.is_object() && object["level"].is_string(), "{line}");
        for secret in &secrets {
            assert!(
                !line.contains(secret.as_str()),
                "{secret:?} in the log: {line}"
            );
        }
    }
    // The access log names the child by the gateway's id, and no more.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("childgraph::access") && l.contains(&id)),
        "{text}"
    );
}

/// A gateway whose stderr nobody reads (a log collector that has stopped) keeps answering: its log lines wait for
/// their own thread, and no request waits on the pipe once the pipe is full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_log_nobody_reads_keeps_answering() {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [("CHILDGRAPH_LOG", "info,childgraph=debug")];
    // Piped and never read: the pipe holds 64 KiB, and the answers below log several times that.
    let (demo, url) = start_logging(dir.path(), &[], &env, Stdio::piped());
    let http = reqwest::Client::new();
    let key = childgraph::demo_key::DemoKey::load_or_create(dir.path()).expect("the demo's key");
    let token = key.token("gp").expect("token");
    let search = json!({
        "query": "{ searchChildren(criteria: {familyName: \"Hartley\", dateOfBirth: \"2019-06-14\"}, access: {purpose: SAFEGUARDING}) { matches { child { id } } } }",
    });
    let (status, body) = post(&http, &url, &token, "find", search)
        .await
        .expect("an answer");
    assert_eq!(status, 200, "{body:#}");
    let id = body["data"]["searchChildren"]["matches"][0]["child"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let view = json!({
        "query": "query($id: ID!) { child(id: $id, access: {purpose: SAFEGUARDING}) { id name { given } } }",
        "variables": { "id": id },
    });
    // Each answer logs its access line, a few hundred bytes: 600 of them are more than twice what the pipe holds.
    for i in 0..600 {
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            post(&http, &url, &token, &format!("view-{i}"), view.clone()),
        )
        .await
        .unwrap_or_else(|_| panic!("answer {i} did not come: the gateway waits on its log"))
        .expect("an answer");
        assert_eq!(answer.0, 200, "{:#}", answer.1);
        assert_eq!(
            answer.1["data"]["child"]["id"],
            id.as_str(),
            "{:#}",
            answer.1
        );
    }
    drop(demo);
}

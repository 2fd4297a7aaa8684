#![allow(missing_docs)]
//! The JSON API over a real SQLite store, through real sockets.

mod common;

use std::sync::Arc;

use common::*;
use tracecraft_core::TraceStore;
use tracecraft_ui::{BuildError, Server};

fn serve(store: Arc<dyn TraceStore>, allow_erase: bool) -> tracecraft_ui::ServerHandle {
    Server::builder()
        .store(store)
        .bind("127.0.0.1:0".parse().unwrap())
        .allow_erase(allow_erase)
        .build()
        .unwrap()
        .spawn()
        .unwrap()
}

fn fixture() -> (
    tempfile::TempDir,
    Arc<dyn TraceStore>,
    tracecraft_core::Uuid,
) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn TraceStore> = sqlite_store(dir.path());
    let id = populated(&*store);
    (dir, store, id)
}

#[test]
fn runs_list_pages_newest_first_with_totals() {
    let (_d, store, id) = fixture();
    let server = serve(store, false);
    let a = server.local_addr();
    let page = get(a, "/api/runs?limit=10").json();
    assert_eq!(page["total"], 67);
    assert_eq!(page["runs"].as_array().unwrap().len(), 10);
    assert_eq!(page["next_offset"], 10);
    assert_eq!(page["runs"][0]["id"], id.to_string(), "newest first");
    let r = &page["runs"][0];
    assert_eq!(r["name"], "support_agent");
    assert_eq!(r["steps"], 6);
    assert_eq!(r["total_tokens"], 741);
    assert_eq!(r["user_id"], "user-4b1c");
    assert_eq!(r["session_id"], "sess-7f3a");
    assert_eq!(r["tags"], serde_json::json!(["prod", "eu"]));
    assert_eq!(r["models"], serde_json::json!(["gpt-4o", "gpt-4o-mini"]));
    let times: Vec<String> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["start_time"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);
    let last = get(a, "/api/runs?limit=10&offset=60").json();
    assert_eq!(last["runs"].as_array().unwrap().len(), 7);
    assert!(last["next_offset"].is_null());
}

#[test]
fn filters_combine_and_bad_parameters_are_named_not_echoed() {
    let (_d, store, _) = fixture();
    let server = serve(store, false);
    let a = server.local_addr();
    let n = |q: &str| {
        get(a, &format!("/api/runs?{q}")).json()["runs"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(n("name=SUPPORT"), 1);
    assert_eq!(n("error=1&name=billing"), 1);
    assert_eq!(n("user=user-4b1c"), 1);
    assert_eq!(n("session=sess-7f3a"), 1);
    assert_eq!(n("tag=eu"), 1);
    assert_eq!(n("min_ms=2000&name=support"), 1);
    assert_eq!(n("min_ms=100000"), 0);
    assert_eq!(n("min_cost=0.001&name=support"), 1);
    // Text search reaches step inputs (a chat message), answered by the store's index with
    // an exact total; model matches any step's model.
    let found = get(a, "/api/runs?q=ORDER+%234411").json();
    assert_eq!(found["total"], 1);
    assert!(found.get("scanned").is_none());
    assert_eq!(found["runs"][0]["name"], "support_agent");
    assert_eq!(found["runs"].as_array().unwrap().len(), 1);
    assert_eq!(n("model=gpt-4o-mini&name=support"), 1);
    assert_eq!(n("model=claude"), 30);
    let sorted = get(a, "/api/runs?sort=duration&dir=desc&limit=1").json();
    assert_eq!(sorted["runs"][0]["name"], "support_agent");
    let bad = get(a, "/api/runs?min_cost=sk-secret-value");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("min_cost"));
    assert!(!bad.text().contains("sk-secret"), "{}", bad.text());
    assert_eq!(get(a, "/api/runs?sort=bogus").status, 400);
    assert_eq!(get(a, "/api/runs?from=yesterday").status, 400);
}

#[test]
fn model_filter_and_text_search_page_with_exact_totals() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn TraceStore> = sqlite_store(dir.path());
    save(&*store, filler_runs(tracecraft_core::Utc::now(), 60));
    let server = serve(store, false);
    let a = server.local_addr();
    // The model filter is the store's: exact totals, plain offsets, case ignored.
    let first = get(a, "/api/runs?model=CLAUDE&limit=20").json();
    assert_eq!(first["total"], 30, "every other filler run calls claude");
    assert_eq!(first["next_offset"], 20);
    let mut seen = first["runs"].as_array().unwrap().len();
    let second = get(a, "/api/runs?model=claude&limit=20&offset=20").json();
    assert!(second["next_offset"].is_null());
    seen += second["runs"].as_array().unwrap().len();
    assert_eq!(seen, 30);
    assert_eq!(get(a, "/api/runs?model=llama").json()["total"], 0);
    // Text search: the store's index answers it.
    let text = get(a, "/api/runs?q=triage&limit=50").json();
    assert_eq!(
        text["total"], 20,
        "every third filler run is a triage_agent"
    );
    assert_eq!(text["runs"].as_array().unwrap().len(), 20);
    assert!(text["next_offset"].is_null());
}

/// Text search looks at what was stored: the redacted content. Words around a redacted
/// email address are found, the address's are not (they never reached the store), and an
/// erased run is found by no search.
#[test]
fn text_search_finds_words_of_redacted_content_and_forgets_erased_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path());
    save(&*store, filler_runs(tracecraft_core::Utc::now(), 10));
    let pipeline = tracecraft_pipeline::PipelineConfig::default()
        .builder()
        .unwrap()
        .store(store.clone())
        .build()
        .unwrap();
    let mut run = tracecraft_core::AgentRun::builder("mailer").build();
    run.input = serde_json::json!({
        "message": "Please refund parcel 7731 to zelda.quartermaine@example.com today"
    });
    let id = run.id;
    pipeline.submit(run);
    let stored = store.get(id).unwrap().expect("stored through the pipeline");
    assert!(!tracecraft_core::to_json(&stored).contains("quartermaine"));

    let dyn_store: Arc<dyn TraceStore> = store.clone();
    let server = serve(dyn_store, false);
    let a = server.local_addr();
    let found = get(a, "/api/runs?q=REFUND+parc+7731").json();
    assert_eq!(found["total"], 1);
    assert_eq!(found["runs"][0]["id"], id.to_string());
    assert_eq!(get(a, "/api/runs?q=quartermaine").json()["total"], 0);
    assert_eq!(get(a, "/api/runs?q=example.com").json()["total"], 0);

    assert!(store.delete(id).unwrap());
    assert_eq!(get(a, "/api/runs?q=refund+parcel").json()["total"], 0);
    assert_eq!(get(a, "/api/runs?q=mailer").json()["total"], 0);
}

#[test]
fn run_view_outlines_steps_and_step_detail_is_full() {
    let (_d, store, id) = fixture();
    let server = serve(store, false);
    let a = server.local_addr();
    let run = get(a, &format!("/api/runs/{id}")).json();
    assert_eq!(run["run"]["name"], "support_agent");
    assert_eq!(run["redaction"]["count"], 3);
    assert_eq!(
        run["redaction"]["rules"][0],
        serde_json::json!({"rule": "email", "count": 2})
    );
    assert_eq!(run["redaction"]["disabled"], false);
    let steps = run["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["n"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "support_agent.plan",
            "openai.chat",
            "search_kb",
            "lookup_order",
            "vector_search",
            "openai.chat.final"
        ]
    );
    let depth: Vec<u64> = steps.iter().map(|s| s["d"].as_u64().unwrap()).collect();
    assert_eq!(depth, [0, 1, 1, 1, 2, 1]);
    assert_eq!(steps[4]["p"], 3, "parent index");
    // The two tools overlap on the time axis.
    let (s1, e1) = (
        steps[2]["s"].as_f64().unwrap(),
        steps[2]["s"].as_f64().unwrap() + steps[2]["ms"].as_f64().unwrap(),
    );
    let (s2, e2) = (
        steps[3]["s"].as_f64().unwrap(),
        steps[3]["s"].as_f64().unwrap() + steps[3]["ms"].as_f64().unwrap(),
    );
    assert!(
        s1 < e2 && s2 < e1,
        "parallel steps overlap: {s1}-{e1} vs {s2}-{e2}"
    );
    assert_eq!(steps[5]["est"], true);
    assert!((run["span_ms"].as_f64().unwrap() - 2400.0).abs() < 1.0);
    let llm_id = steps[1]["id"].as_str().unwrap();
    let st = get(a, &format!("/api/runs/{id}/steps/{llm_id}")).json();
    assert_eq!(st["model_name"], "gpt-4o");
    assert_eq!(st["inputs"]["messages"][1]["content"], CHAT_USER);
    assert_eq!(
        st["outputs"]["choices"][0]["message"]["content"],
        CHAT_ANSWER
    );
    assert_eq!(st["children"], 0);
    assert_eq!(
        get(
            a,
            &format!("/api/runs/{id}/steps/{}", tracecraft_core::Uuid::new_v4())
        )
        .status,
        404
    );
    assert_eq!(
        get(a, &format!("/api/runs/{}", tracecraft_core::Uuid::new_v4())).status,
        404
    );
    assert_eq!(get(a, "/api/runs/not-a-uuid").status, 404);
}

#[test]
fn unredacted_runs_are_flagged() {
    let (_d, store, _) = fixture();
    let server = serve(store, false);
    let a = server.local_addr();
    let page = get(a, "/api/runs?name=debug_session").json();
    assert_eq!(page["runs"][0]["redaction_disabled"], true);
    let id = page["runs"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        get(a, &format!("/api/runs/{id}")).json()["redaction"]["disabled"],
        true
    );
}

#[test]
fn overview_sessions_and_users_aggregate() {
    let (_d, store, _) = fixture();
    let server = serve(store, false);
    let a = server.local_addr();
    let o = get(a, "/api/overview").json();
    assert_eq!(o["sampled"], 67);
    assert_eq!(o["complete"], true);
    assert_eq!(o["totals"]["runs"], 67);
    let runs_in_buckets: u64 = o["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["runs"].as_u64().unwrap())
        .sum();
    assert_eq!(runs_in_buckets, 67);
    assert_eq!(
        o["models"][0]["model"], "gpt-4o-mini",
        "30 filler runs + the final answer"
    );
    assert_eq!(o["models"][0]["calls"], 31);
    assert!(
        o["failing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "charge_card")
    );
    assert!(o["totals"]["p95"].as_f64().unwrap() >= o["totals"]["p50"].as_f64().unwrap());
    let s = get(a, "/api/sessions").json();
    let g = s["groups"].as_array().unwrap();
    let sess = g.iter().find(|g| g["id"] == "sess-03").unwrap();
    assert_eq!(sess["runs"], 12);
    let u = get(a, "/api/users").json();
    assert!(
        u["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["id"] == "user-4b1c" && g["runs"] == 1)
    );
}

/// The overview and the sessions and users views are computed by the store over every
/// matching run (once they read only the newest 5,000): 6,000 runs are all counted, a time
/// range selects exactly the runs the store counts in it, and the model filter applies.
#[test]
fn aggregates_cover_every_run_of_a_large_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn TraceStore> = sqlite_store(dir.path());
    let now = tracecraft_core::Utc::now();
    save(&*store, filler_runs(now, 6_000));
    let server = serve(store.clone(), false);
    let a = server.local_addr();
    let o = get(a, "/api/overview").json();
    assert_eq!(o["totals"]["runs"], 6_000);
    assert_eq!(o["sampled"], 6_000);
    assert_eq!(o["complete"], true);
    let in_buckets: u64 = o["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["runs"].as_u64().unwrap())
        .sum();
    assert_eq!(in_buckets, 6_000);
    let calls: u64 = o["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(calls, 6_000, "one model call per filler run");
    assert_eq!(o["failing"][0]["name"], "anthropic.messages");

    let from = now - chrono::Duration::days(20);
    let to = now - chrono::Duration::days(5);
    let fmt = |t: tracecraft_core::DateTime<tracecraft_core::Utc>| {
        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let ranged = get(
        a,
        &format!("/api/overview?from={}&to={}", fmt(from), fmt(to)),
    )
    .json();
    let want = store
        .count(&tracecraft_core::TraceQuery::new().started(Some(from), Some(to)))
        .unwrap();
    assert!(want > 2_000, "{want}");
    assert_eq!(ranged["totals"]["runs"], want);

    let claude = get(a, "/api/overview?model=claude").json();
    assert_eq!(claude["totals"]["runs"], 3_000);
    for (view, groups, each) in [("sessions", 5, 1_200), ("users", 4, 1_500)] {
        let v = get(a, &format!("/api/{view}")).json();
        assert_eq!(v["sampled"], 6_000, "{view}");
        assert_eq!(v["complete"], true, "{view}");
        let g = v["groups"].as_array().unwrap();
        assert_eq!(g.len(), groups, "{view}");
        for group in g {
            assert_eq!(group["runs"], each, "{view}: {group}");
        }
        let total: u64 = g.iter().map(|x| x["runs"].as_u64().unwrap()).sum();
        assert_eq!(total, 6_000, "{view}");
        // The newest run (filler 0) is in sess-00 and user-00: listed first.
        assert!(
            g[0]["id"].as_str().unwrap().ends_with("-00"),
            "{view}: {}",
            g[0]
        );
        let per_model = get(a, &format!("/api/{view}?model=claude")).json();
        let total: u64 = per_model["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["runs"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 3_000, "{view} with the model filter");
    }
}

#[test]
fn every_response_carries_the_security_headers() {
    let (_d, store, _) = fixture();
    let server = serve(store, false);
    let a = server.local_addr();
    for path in ["/", "/assets/app.js", "/api/runs", "/api/nope", "/nope"] {
        let r = get(a, path);
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{path}: {csp}"
        );
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
    }
    let index = get(a, "/runs/0b0e9f6a-1111-4222-8333-444455556666");
    assert_eq!(index.status, 200);
    assert!(index.text().contains("/assets/app.js"));
    assert!(!index.text().contains("<script>"), "no inline script");
    assert_eq!(
        get(a, "/assets/app.js").header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
}

#[test]
fn foreign_host_headers_are_refused_on_loopback() {
    let (_d, store, _) = fixture();
    let server = serve(store, false);
    let a = server.local_addr();
    let r = request(a, "GET", "/api/runs", &[("Host", "evil.example:6007")], b"");
    assert_eq!(r.status, 421);
    let port = a.port().to_string();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        assert_eq!(
            request(a, "GET", "/api/meta", &[("Host", &host)], b"").status,
            200
        );
    }
}

#[test]
fn read_only_unless_erase_is_allowed_and_confirmed() {
    let (_d, store, id) = fixture();
    let server = serve(Arc::clone(&store), false);
    let a = server.local_addr();
    let path = format!("/api/runs/{id}");
    let idh = id.to_string();
    assert_eq!(get(a, "/api/meta").json()["allow_erase"], false);
    assert_eq!(
        request(a, "DELETE", &path, &[("X-TraceCraft-Erase", &idh)], b"").status,
        403
    );
    assert_eq!(request(a, "POST", &path, &[], b"").status, 405);
    assert!(store.get(id).unwrap().is_some());
    drop(server);

    let server = serve(Arc::clone(&store), true);
    let a = server.local_addr();
    assert_eq!(get(a, "/api/meta").json()["allow_erase"], true);
    // Without the confirmation header (what a cross-site form would send): refused.
    assert_eq!(request(a, "DELETE", &path, &[], b"").status, 400);
    let other = tracecraft_core::Uuid::new_v4().to_string();
    assert_eq!(
        request(a, "DELETE", &path, &[("X-TraceCraft-Erase", &other)], b"").status,
        400
    );
    assert!(store.get(id).unwrap().is_some());
    let r = request(a, "DELETE", &path, &[("X-TraceCraft-Erase", &idh)], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["existed"], true);
    assert!(store.get(id).unwrap().is_none());
    assert_eq!(get(a, &path).status, 404);
}

#[test]
fn a_token_guards_every_request_and_moves_into_a_cookie() {
    let (_d, store, _) = fixture();
    let token = "t0k3n-abcdefghijklmnop";
    let server = Server::builder()
        .store(store)
        .bind("127.0.0.1:0".parse().unwrap())
        .token(Some(token.into()))
        .build()
        .unwrap();
    assert!(server.url().ends_with(&format!("/?token={token}")));
    let server = server.spawn().unwrap();
    let a = server.local_addr();
    assert_eq!(get(a, "/api/runs").status, 401);
    assert_eq!(get(a, "/").status, 401);
    assert_eq!(get(a, "/?token=wrong-token-xxxxxxxx").status, 401);
    let r = get(a, &format!("/?token={token}"));
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/"));
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap();
    assert_eq!(
        request(a, "GET", "/api/runs", &[("Cookie", pair)], b"").status,
        200
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(
        request(a, "GET", "/api/runs", &[("Authorization", &bearer)], b"").status,
        200
    );
    // The token in the query string of an API call is not accepted (it would end up in logs).
    assert_eq!(get(a, &format!("/api/runs?token={token}")).status, 401);
}

#[test]
fn non_loopback_needs_a_token_and_tokens_must_be_strong() {
    let store: Arc<dyn TraceStore> = Arc::new(tracecraft_core::testing::MemoryStore::new());
    let err = Server::builder()
        .store(Arc::clone(&store))
        .bind("0.0.0.0:0".parse().unwrap())
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::TokenRequired { .. }), "{err}");
    let err = Server::builder()
        .store(Arc::clone(&store))
        .token(Some("short".into()))
        .bind("127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::BadToken));
    assert!(!err.to_string().contains("short"));
    let err = Server::builder().build().unwrap_err();
    assert!(matches!(err, BuildError::NoStore));
    let ok = Server::builder()
        .store(store)
        .bind("0.0.0.0:0".parse().unwrap())
        .token(Some("a-long-enough-token-1234".into()))
        .build()
        .unwrap();
    assert!(
        !format!("{ok:?}").contains("a-long-enough"),
        "Debug hides the token"
    );
}

#[test]
fn shutdown_stops_the_server() {
    let store: Arc<dyn TraceStore> = Arc::new(tracecraft_core::testing::MemoryStore::new());
    let server = serve(store, false);
    let a = server.local_addr();
    assert_eq!(get(a, "/api/changes").json()["count"], 0);
    server.shutdown().unwrap();
    assert!(std::net::TcpStream::connect(a).is_err());
}

#[test]
fn the_same_api_serves_a_jsonl_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn TraceStore> = Arc::new(
        tracecraft_store_jsonl::JsonlStore::open(tracecraft_store_jsonl::JsonlConfig::new(
            dir.path(),
        ))
        .unwrap(),
    );
    let id = populated(&*store);
    let server = serve(store, false);
    let a = server.local_addr();
    assert_eq!(get(a, "/api/meta").json()["store"], "jsonl");
    let page = get(a, "/api/runs?limit=5").json();
    assert_eq!(page["total"], 67);
    assert_eq!(page["runs"][0]["id"], id.to_string());
    assert_eq!(
        get(a, &format!("/api/runs/{id}")).json()["steps"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(
        get(a, "/api/runs?q=order+%234411").json()["runs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

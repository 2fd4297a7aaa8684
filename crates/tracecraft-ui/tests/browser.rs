//! The trace browser in a real browser: headless Chromium driven through chromedriver's
//! WebDriver HTTP API (plain JSON over a socket). Loads the list, applies a filter, goes
//! back, opens a run whose waterfall shows two overlapping parallel steps, opens the chat
//! view of an LLM step, and checks that script payloads stored in runs execute nothing.
//! Screenshots go to `target/ui-screenshots/`.
//!
//! Without `chromium` and `chromedriver` the test is skipped with a message, unless
//! `TRACECRAFT_REQUIRE_BROWSER=1`, when it fails.
#![allow(missing_docs)]

mod common;

use std::sync::Arc;

use common::webdriver::{Session, browser_or_skip, screenshot_dir};
use common::*;
use tracecraft_core::{TraceStore, json};

#[test]
fn the_browser_shows_runs_waterfalls_and_chats_and_runs_no_payload() {
    let Some((chromium, chromedriver)) = browser_or_skip("the browser test") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn TraceStore> = sqlite_store(dir.path());
    let support_id = populated(&*store);
    let server = tracecraft_ui::Server::builder()
        .store(Arc::clone(&store))
        .bind("127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap()
        .spawn()
        .unwrap();
    let base = server.url().trim_end_matches('/').to_owned();
    let shots = screenshot_dir();
    let profile = tempfile::tempdir().unwrap();
    let b = Session::start(&chromium, &chromedriver, profile.path());

    // The list loads, newest first.
    b.goto(&format!("{base}/"));
    b.wait(
        "the runs list",
        "return document.querySelectorAll('#runs-table tbody tr').length >= 50",
    );
    let first = b.js("return document.querySelector('#runs-table tbody tr .run-name').textContent");
    assert_eq!(first, "support_agent");
    let info = b.js("return document.getElementById('pager-info').textContent");
    assert_eq!(info, "1–50 of 67");
    b.assert_nothing_executed("list");
    b.screenshot(&shots.join("list.png"));

    // Live: a run stored while the list is open appears without a reload.
    let mut arrival = tracecraft_core::AgentRun::new("live_arrival");
    arrival.finish_at(tracecraft_core::Utc::now());
    save(&*store, vec![arrival]);
    b.wait(
        "the live run",
        "return document.querySelector('#runs-table tbody tr .run-name').textContent === 'live_arrival'",
    );
    let info = b.js("return document.getElementById('pager-info').textContent");
    assert_eq!(info, "1–50 of 68");

    // A filter narrows the list and lands in the URL; the back button restores the list.
    b.type_into("#f-name", "support");
    b.click("#f-apply");
    b.wait(
        "the filtered list",
        "return document.querySelectorAll('#runs-table tbody tr').length === 1 && location.search.includes('name=support')",
    );
    b.js("history.back(); return null");
    b.wait(
        "the unfiltered list after back",
        "return !location.search.includes('name=') && document.querySelectorAll('#runs-table tbody tr').length >= 50",
    );

    // Text search finds the XSS runs: the payloads are shown as text and run nothing.
    b.type_into("#f-q", "xss");
    b.click("#f-apply");
    b.wait(
        "the XSS runs",
        "return document.querySelectorAll('#runs-table tbody tr').length === 4",
    );
    let text = b.js("return document.getElementById('runs-table').textContent");
    assert!(
        text.as_str().unwrap().contains("<script>window.__xss=1"),
        "payloads shown as text"
    );
    b.assert_nothing_executed("XSS runs listed");
    let xss_run = b.js("return document.querySelector('#runs-table tbody tr').dataset.id");
    b.goto(&format!("{base}/runs/{}", xss_run.as_str().unwrap()));
    b.wait(
        "the XSS run",
        "return document.querySelectorAll('#waterfall .wf-row').length === 1",
    );
    b.click("#waterfall .wf-row");
    b.wait(
        "the XSS step",
        "return document.getElementById('step-detail') !== null",
    );
    b.assert_nothing_executed("XSS run and step opened");
    b.screenshot(&shots.join("xss.png"));

    // The run view: two parallel tools overlap on the waterfall's time axis.
    b.goto(&format!("{base}/"));
    b.wait(
        "the list",
        "return document.querySelectorAll('#runs-table tbody tr').length >= 50",
    );
    b.click(&format!("tr[data-id='{support_id}'] .run-name"));
    b.wait(
        "the waterfall",
        "return document.querySelectorAll('#waterfall .wf-row').length === 6",
    );
    let overlap = b.js(
        "const rows = [...document.querySelectorAll('#waterfall .wf-row')]; \
         const bar = n => rows.find(r => r.querySelector('.wf-name').textContent === n).querySelector('.wf-bar').getBoundingClientRect(); \
         const a = bar('search_kb'), c = bar('lookup_order'); \
         return {a: [a.left, a.right], c: [c.left, c.right], overlap: a.left < c.right && c.left < a.right && a.width > 20 && c.width > 20}",
    );
    assert_eq!(
        overlap["overlap"], true,
        "parallel steps overlap: {overlap}"
    );
    assert!(
        b.js("return location.pathname")
            .as_str()
            .unwrap()
            .ends_with(&support_id.to_string())
    );
    b.screenshot(&shots.join("waterfall.png"));

    // The chat view of the LLM step shows every message in full, tool calls included.
    b.js("[...document.querySelectorAll('#waterfall .wf-row')].find(r => r.querySelector('.wf-name').textContent === 'openai.chat').click(); return null");
    let chat = b.wait(
        "the chat view",
        "const c = document.getElementById('chat'); return c && c.textContent",
    );
    let chat = chat.as_str().unwrap();
    for want in [
        CHAT_SYSTEM,
        CHAT_USER,
        // The tool result is JSON: shown indented, every field in full.
        "\"status\": \"in transit\"",
        "\"eta\": \"Thursday\"",
        CHAT_ANSWER,
        "lookup_order",
        "\"order_id\": \"4411\"",
    ] {
        assert!(chat.contains(want), "chat shows {want:?}: {chat}");
    }
    let roles = b.js(
        "return [...document.querySelectorAll('#chat .msg .role')].map(e => e.textContent).join(',')",
    );
    assert_eq!(roles, "system,user,assistant,tool,assistant");
    b.js("document.getElementById('chat').closest('section').scrollIntoView(); return null");
    b.screenshot(&shots.join("chat.png"));

    // Anthropic-shaped messages (system + content blocks, tool_use, tool_result) too.
    let mut claude = tracecraft_core::AgentRun::new("claude_agent");
    let mut llm = step(
        &claude,
        tracecraft_core::StepType::Llm,
        "anthropic.messages",
        claude.start_time,
        0,
        800,
    );
    llm.model_name = Some("claude-sonnet-4".into());
    llm.inputs
        .insert("system".into(), json!("You answer weather questions."));
    llm.inputs.insert(
        "messages".into(),
        json!([
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C, cloudy"}]}
        ]),
    );
    llm.outputs.insert(
        "content".into(),
        json!([{"type": "text", "text": "It is 18°C and cloudy in Paris."}]),
    );
    let llm_id = llm.id;
    claude.push_step(llm);
    claude.finish_at(at(claude.start_time, 800));
    let claude_id = claude.id;
    save(&*store, vec![claude]);
    b.goto(&format!("{base}/runs/{claude_id}?step={llm_id}"));
    let chat = b.wait(
        "the Anthropic chat",
        "const c = document.getElementById('chat'); return c && c.textContent",
    );
    for want in [
        "You answer weather questions.",
        "Weather in Paris?",
        "Let me check.",
        "get_weather",
        "\"city\": \"Paris\"",
        "18°C, cloudy",
        "It is 18°C and cloudy in Paris.",
    ] {
        assert!(
            chat.as_str().unwrap().contains(want),
            "chat shows {want:?}: {chat}"
        );
    }
    let roles = b.js(
        "return [...document.querySelectorAll('#chat .msg .role')].map(e => e.textContent).join(',')",
    );
    assert_eq!(roles, "system,user,assistant,user,assistant");
    b.screenshot(&shots.join("chat-anthropic.png"));

    // A failed step: marked on the waterfall, its error shown in the detail.
    b.goto(&format!("{base}/?name=billing"));
    b.wait(
        "the failing run",
        "return document.querySelectorAll('#runs-table tbody tr').length === 1",
    );
    // The list's request was the one the page's preload hint started: made once.
    let requests = b.js(
        "return performance.getEntriesByType('resource').filter(r => r.name.includes('/api/runs?')).map(r => r.name.replace(location.origin, ''))",
    );
    assert_eq!(
        requests,
        serde_json::json!(["/api/runs?name=billing&limit=50"]),
        "one request, the preloaded one"
    );
    b.click("#runs-table tbody tr .run-name");
    b.wait(
        "the failed step",
        "return document.querySelector('#waterfall .wf-row.has-error .err-mark') !== null",
    );
    b.click("#waterfall .wf-row");
    let err = b.wait(
        "the error card",
        "const c = document.querySelector('#step-detail .error-card'); return c && c.textContent",
    );
    assert!(
        err.as_str().unwrap().contains("PaymentError")
            && err.as_str().unwrap().contains("card declined")
    );
    b.screenshot(&shots.join("error.png"));

    // A run stored with redaction disabled says so.
    b.goto(&format!("{base}/?name=debug_session"));
    b.wait(
        "the unredacted run",
        "return document.querySelectorAll('#runs-table tbody tr').length === 1",
    );
    b.click("#runs-table tbody tr .run-name");
    b.wait(
        "the redaction banner",
        "return document.getElementById('redaction-disabled') !== null",
    );

    // Overview and sessions render.
    b.goto(&format!("{base}/overview"));
    b.wait(
        "the charts",
        "return document.querySelectorAll('#charts svg.chart').length === 4",
    );
    b.screenshot(&shots.join("overview.png"));
    b.click("#ranges a:nth-child(1)");
    b.wait(
        "the last hour's overview",
        "return location.search.includes('range=1h') && location.search.includes('from=') \
         && document.querySelector('#ranges .active').textContent === 'Last hour' \
         && document.querySelectorAll('#charts svg.chart').length === 4",
    );
    b.goto(&format!("{base}/sessions"));
    b.wait(
        "the sessions",
        "return document.querySelectorAll('#sessions-table tbody tr').length >= 5",
    );
    b.assert_nothing_executed("sessions");
    b.goto(&format!("{base}/users"));
    b.wait(
        "the users",
        "return document.querySelectorAll('#users-table tbody tr').length >= 5",
    );
    b.assert_nothing_executed("users");
    b.screenshot(&shots.join("users.png"));
    b.goto(&format!("{base}/sessions?id=sess-7f3a"));
    b.wait(
        "a conversation",
        "return document.querySelectorAll('.conversation .turn').length === 1",
    );
    b.screenshot(&shots.join("session.png"));
    server.shutdown().unwrap();

    // With erasure allowed, the run page erases after a confirmation.
    let server = tracecraft_ui::Server::builder()
        .store(Arc::clone(&store))
        .bind("127.0.0.1:0".parse().unwrap())
        .allow_erase(true)
        .build()
        .unwrap()
        .spawn()
        .unwrap();
    let base = server.url().trim_end_matches('/').to_owned();
    b.goto(&format!("{base}/runs/{support_id}"));
    b.wait(
        "the erase button",
        "return document.getElementById('erase') !== null",
    );
    b.click("#erase");
    b.accept_alert();
    b.wait(
        "the list after erasure",
        "return location.pathname === '/' && document.querySelectorAll('#runs-table tbody tr').length >= 50",
    );
    assert!(store.get(support_id).unwrap().is_none(), "erased");
    drop(b);
    server.shutdown().unwrap();
}

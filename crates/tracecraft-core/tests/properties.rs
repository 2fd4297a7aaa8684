//! Property: any run the builders make round-trips through JSON.

use proptest::prelude::*;
use tracecraft_core::{AgentRun, Step, StepType, Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_.]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn time() -> impl Strategy<Value = tracecraft_core::DateTime<tracecraft_core::Utc>> {
    (0i64..4_000_000_000, 0u32..1_000_000)
        .prop_map(|(s, us)| tracecraft_core::DateTime::from_timestamp(s, us * 1000).unwrap())
}

prop_compose! {
    fn step()(ty in prop::sample::select(StepType::ALL.to_vec()), name in ".*", start in time(),
              end in proptest::option::of(time()), input in json_value(), tokens in proptest::option::of((0u64..1_000_000, 0u64..1_000_000)),
              cost in proptest::option::of(0.0f64..100.0), err in proptest::option::of((".*", "[A-Za-z]*")),
              chunks in prop::collection::vec(".*", 0..3)) -> Step {
        let mut b = Step::builder(uuid::Uuid::new_v4(), ty, name).start_time(start).input("x", input);
        if let Some(e) = end { b = b.end_time(e); }
        if let Some((i, o)) = tokens { b = b.tokens(i, o); }
        if let Some(c) = cost { b = b.cost_usd(c); }
        if let Some((m, t)) = err { b = b.error(m, t); }
        for c in chunks { b = b.chunk(c); }
        b.build()
    }
}

prop_compose! {
    fn run()(name in ".*", steps in prop::collection::vec((step(), prop::collection::vec(step(), 0..3)), 0..4),
             input in json_value(), output in json_value(), tags in prop::collection::vec(".*", 0..3),
             session in proptest::option::of(".*"), start in time()) -> AgentRun {
        let mut b = AgentRun::builder(name).input(input).output(output).start_time(start);
        if let Some(s) = session { b = b.session_id(s); }
        for t in tags { b = b.tag(t); }
        for (mut parent, children) in steps {
            for c in children { parent.push_child(c); }
            b = b.step(parent);
        }
        b.build()
    }
}

/// Any instant chrono can hold, nanoseconds and leap seconds included (years outside
/// 0-9999 take the slow path of the timestamp formatter).
fn any_time() -> impl Strategy<Value = tracecraft_core::DateTime<tracecraft_core::Utc>> {
    prop_oneof![
        time(),
        (-300_000_000_000i64..300_000_000_000, 0u32..2_000_000_000)
            .prop_filter_map("representable", |(s, ns)| {
                tracecraft_core::DateTime::from_timestamp(s, ns)
            }),
    ]
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-0.0),
        0.0f64..1e6
    ]
}

prop_compose! {
    /// A builder run with every optional field filled in at random, odd values included.
    fn full_run()(mut run in run(), texts in prop::collection::vec(proptest::option::of(".*"), 8),
                  times in prop::collection::vec(any_time(), 4), floats in prop::collection::vec(any_f64(), 4),
                  ints in prop::collection::vec(any::<u64>(), 3), attrs in json_value(),
                  flags in prop::collection::vec(any::<bool>(), 2)) -> AgentRun {
        run.description = texts[0].clone();
        run.user_id = texts[1].clone();
        run.agent_name = texts[2].clone();
        run.agent_id = texts[3].clone();
        run.agent_description = texts[4].clone();
        run.cloud_provider = texts[5].clone();
        run.cloud_trace_id = texts[6].clone();
        run.sample_reason = texts[7].clone();
        run.start_time = times[0];
        run.end_time = Some(times[1]);
        run.duration_ms = Some(floats[0]);
        run.total_cost_usd = floats[1];
        run.total_tokens = ints[0];
        run.error_count = ints[1];
        run.should_export = flags[0];
        if let Value::Object(m) = attrs {
            run.attributes = m;
        }
        run.walk_mut(|s, depth| {
            if depth == 0 {
                s.start_time = times[2];
                s.end_time = Some(times[3]);
                s.duration_ms = Some(floats[2]);
                s.cost_usd = Some(floats[3]);
                s.output_tokens = Some(ints[2]);
                s.model_name = texts[0].clone();
                s.model_provider = texts[1].clone();
                s.is_streaming = flags[1];
            }
        });
        run
    }
}

proptest! {
    #[test]
    fn fast_writer_matches_the_derived_serialize(run in full_run()) {
        // `json::to_json` writes runs without the generic serializer; serde_json through the
        // derived `Serialize` impls is the reference, byte for byte.
        prop_assert_eq!(json::to_json(&run), serde_json::to_string(&run).unwrap());
    }

    #[test]
    fn builder_runs_round_trip(run in run()) {
        let text = json::to_json(&run);
        let back = json::parse_run(&text).unwrap();
        prop_assert_eq!(&back, &run);
        prop_assert_eq!(json::to_json(&back), text);
    }

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,200}") {
        let _ = json::parse_run(&s);
    }
}

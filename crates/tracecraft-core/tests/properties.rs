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

proptest! {
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

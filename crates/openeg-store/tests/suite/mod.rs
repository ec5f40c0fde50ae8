//! Behavioural suite every `MetaStore` backend must pass. Each section uses its own project
//! ids, so sections are independent of each other on one fresh store.

pub mod cluster;
pub mod delivery;
pub mod mirror;

use std::sync::Arc;

use openeg_store::{Document, Kind, ListQuery, MetaStore, QuotaCheck, SortKey, StoreError};
use serde_json::{json, Value};

#[allow(clippy::too_many_arguments)]
fn rec(
    project: &str,
    kind: Kind,
    id: &str,
    name: &str,
    parent: Option<&str>,
    created: i64,
    updated: i64,
    body: Value,
    refs: &[&str],
) -> Document {
    Document {
        project_id: project.into(),
        kind,
        id: id.into(),
        name: name.into(),
        parent_id: parent.map(Into::into),
        created_at: created,
        updated_at: updated,
        body,
        refs: refs.iter().map(|s| s.to_string()).collect(),
    }
}

fn simple(project: &str, kind: Kind, id: &str, name: &str) -> Document {
    rec(project, kind, id, name, None, 1, 1, json!({}), &[])
}

fn ids(v: &[Document]) -> Vec<&str> {
    v.iter().map(|r| r.id.as_str()).collect()
}

pub async fn run_suite(store: Arc<dyn MetaStore>) {
    let s = store.as_ref();
    projects(s).await;
    crud(s).await;
    duplicates(s).await;
    listing(s).await;
    references(s).await;
    quotas(s).await;
    concurrent_quota(store.clone()).await;
    concurrent_duplicates(store.clone()).await;
    tokens(s).await;
    exclusive_sections(store.clone()).await;
}

/// Holders of one section name take turns; other names are not held up.
async fn exclusive_sections(store: Arc<dyn MetaStore>) {
    use std::time::Duration;
    let held = store.exclusive("suite-a").await.unwrap();
    let s2 = store.clone();
    let waiter = tokio::spawn(async move { s2.exclusive("suite-a").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "entered a held section");
    let other = tokio::time::timeout(Duration::from_secs(5), store.exclusive("suite-b"))
        .await
        .expect("another name must not wait")
        .unwrap();
    drop(other);
    drop(held);
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiter enters once the section is left")
        .unwrap()
        .unwrap();
}

async fn projects(s: &dyn MetaStore) {
    assert!(s.ensure_project("proj-a").await.unwrap());
    assert!(!s.ensure_project("proj-a").await.unwrap());
    assert!(s.ensure_project("proj-b").await.unwrap());
    assert!(!s.ensure_project("proj-b").await.unwrap());
}

async fn crud(s: &dyn MetaStore) {
    let p = "crud";
    // Member order must survive storage (wire shape); nested values and unicode too.
    let body = json!({"z": 1, "a": {"y": [1, "two", null], "b": true}, "name": "ünï ✓"});
    let r = rec(
        p,
        Kind::Channel,
        "id-1",
        "chan",
        Some("par"),
        10,
        20,
        body,
        &["k:1", "k:2"],
    );
    s.insert(&r, &[]).await.unwrap();

    let got = s.get(p, Kind::Channel, "id-1").await.unwrap().unwrap();
    assert_eq!(got, r);
    assert_eq!(
        serde_json::to_string(&got.body).unwrap(),
        serde_json::to_string(&r.body).unwrap(),
        "body member order preserved"
    );
    assert!(s
        .get("other", Kind::Channel, "id-1")
        .await
        .unwrap()
        .is_none());
    assert!(s.get(p, Kind::Source, "id-1").await.unwrap().is_none());
    assert!(s.get(p, Kind::Channel, "nope").await.unwrap().is_none());

    assert_eq!(
        s.get_by_name(p, Kind::Channel, "chan").await.unwrap(),
        Some(r.clone())
    );
    assert!(s
        .get_by_name(p, Kind::Channel, "CHAN")
        .await
        .unwrap()
        .is_none());
    assert!(s
        .get_by_name(p, Kind::Source, "chan")
        .await
        .unwrap()
        .is_none());
    assert!(s
        .get_by_name("other", Kind::Channel, "chan")
        .await
        .unwrap()
        .is_none());

    // Unnamed records are never found by (empty) name.
    s.insert(&simple(p, Kind::Agency, "ag-1", ""), &[])
        .await
        .unwrap();
    assert!(s.get_by_name(p, Kind::Agency, "").await.unwrap().is_none());

    let mut u = r.clone();
    u.name = "chan2".into();
    u.parent_id = None;
    u.updated_at = 99;
    u.body = json!({"description": "new"});
    u.refs = vec!["k:3".into()];
    assert!(s.update(&u).await.unwrap());
    assert_eq!(
        s.get(p, Kind::Channel, "id-1").await.unwrap(),
        Some(u.clone())
    );
    assert!(s
        .get_by_name(p, Kind::Channel, "chan")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.get_by_name(p, Kind::Channel, "chan2").await.unwrap(),
        Some(u.clone())
    );

    let mut absent = u.clone();
    absent.id = "id-missing".into();
    assert!(!s.update(&absent).await.unwrap());
    assert!(s
        .get(p, Kind::Channel, "id-missing")
        .await
        .unwrap()
        .is_none());
    // Same id but another project/kind is a different record.
    let mut other_proj = u.clone();
    other_proj.project_id = "other".into();
    assert!(!s.update(&other_proj).await.unwrap());

    assert!(!s.delete(p, Kind::Source, "id-1").await.unwrap());
    assert!(!s.delete("other", Kind::Channel, "id-1").await.unwrap());
    assert!(s.delete(p, Kind::Channel, "id-1").await.unwrap());
    assert!(!s.delete(p, Kind::Channel, "id-1").await.unwrap());
    assert!(s.get(p, Kind::Channel, "id-1").await.unwrap().is_none());

    // Same (project, kind, id) twice is a backend error, not a duplicate-name error.
    let a = simple(p, Kind::Channel, "id-x", "x1");
    s.insert(&a, &[]).await.unwrap();
    let mut b = a.clone();
    b.name = "x2".into();
    assert!(matches!(
        s.insert(&b, &[]).await,
        Err(StoreError::Backend(_))
    ));
}

async fn duplicates(s: &dyn MetaStore) {
    let p = "dup";
    s.insert(&simple(p, Kind::Channel, "c1", "same"), &[])
        .await
        .unwrap();
    let r2 = rec(
        p,
        Kind::Channel,
        "c2",
        "same",
        None,
        1,
        1,
        json!({}),
        &["dup:ref"],
    );
    assert!(matches!(
        s.insert(&r2, &[]).await,
        Err(StoreError::Duplicate)
    ));
    assert!(s.get(p, Kind::Channel, "c2").await.unwrap().is_none());
    assert!(s.referencing(p, "dup:ref").await.unwrap().is_empty());
    // Case matters; other project and other kind are fine.
    s.insert(&simple(p, Kind::Channel, "c3", "SAME"), &[])
        .await
        .unwrap();
    s.insert(&simple("dup-other", Kind::Channel, "c1", "same"), &[])
        .await
        .unwrap();
    s.insert(&simple(p, Kind::Connection, "c1", "same"), &[])
        .await
        .unwrap();
    // Empty names never collide.
    for i in 0..3 {
        s.insert(&simple(p, Kind::Agency, &format!("a{i}"), ""), &[])
            .await
            .unwrap();
    }
    assert_eq!(s.count(p, Kind::Agency, None).await.unwrap(), 3);

    // Renaming onto a taken name fails and changes nothing; keeping one's own name is fine.
    let mut c3 = s.get(p, Kind::Channel, "c3").await.unwrap().unwrap();
    let before = c3.clone();
    c3.name = "same".into();
    c3.refs = vec!["changed".into()];
    assert!(matches!(s.update(&c3).await, Err(StoreError::Duplicate)));
    assert_eq!(
        s.get(p, Kind::Channel, "c3").await.unwrap(),
        Some(before.clone())
    );
    let mut c3b = before.clone();
    c3b.body = json!({"v": 2});
    assert!(s.update(&c3b).await.unwrap());
    // A freed name can be reused.
    assert!(s.delete(p, Kind::Channel, "c1").await.unwrap());
    s.insert(&simple(p, Kind::Channel, "c4", "same"), &[])
        .await
        .unwrap();
}

async fn listing(s: &dyn MetaStore) {
    let p = "list";
    let k = Kind::Source;
    let recs = vec![
        rec(
            p,
            k,
            "id-a",
            "Alpha",
            Some("c1"),
            100,
            500,
            json!({"type": "RABBITMQ", "description": "Orders Queue"}),
            &["connection:x"],
        ),
        rec(
            p,
            k,
            "id-b",
            "beta_1",
            Some("c1"),
            200,
            400,
            json!({"type": "ROCKETMQ", "description": "payments"}),
            &[],
        ),
        rec(
            p,
            k,
            "id-c",
            "gamma%2",
            Some("c2"),
            300,
            300,
            json!({"type": "RABBITMQ", "description": "ORDERS archive", "n": 5}),
            &["connection:x", "fn:urn1"],
        ),
        rec(
            p,
            k,
            "id-d",
            "betaX1",
            None,
            300,
            300,
            json!({"type": "APPLICATION", "description": 7}),
            &["fn:urn1"],
        ),
        rec(
            p,
            k,
            "id-e",
            "ALPHA",
            Some("c2"),
            100,
            100,
            json!({"type": "RABBITMQ", "x.y": "dotted", "it's": "q\"uote"}),
            &[],
        ),
    ];
    for r in &recs {
        s.insert(r, &[]).await.unwrap();
    }
    // Noise: other kind, other project.
    s.insert(&simple(p, Kind::Channel, "id-z", "Alpha"), &[])
        .await
        .unwrap();
    s.insert(&simple("list-other", k, "id-y", "Alpha"), &[])
        .await
        .unwrap();

    let by_id = |id: &str| recs.iter().find(|r| r.id == id).unwrap().clone();
    let run = |q: ListQuery| async move { s.list(p, k, &q).await.unwrap() };
    // Asserts total == expected length and page ids sorted as given (default sort is
    // created_at ASC, id ASC).
    let check = |q: ListQuery, expect: &'static [&'static str]| async move {
        let (total, page) = run(q.clone()).await;
        assert_eq!(ids(&page), expect, "query {q:?}");
        assert_eq!(total, expect.len() as u64, "total of {q:?}");
    };

    // Full records come back, refs included.
    let (total, all) = run(ListQuery::default()).await;
    assert_eq!(total, 5);
    assert_eq!(
        all,
        ["id-a", "id-e", "id-b", "id-c", "id-d"].map(by_id).to_vec()
    );

    let q = |f: fn(&mut ListQuery)| {
        let mut q = ListQuery::default();
        f(&mut q);
        q
    };
    check(q(|q| q.parent_id = Some("c1".into())), &["id-a", "id-b"]).await;
    check(q(|q| q.parent_id = Some("zz".into())), &[]).await;
    check(q(|q| q.name = Some("Alpha".into())), &["id-a"]).await;
    check(q(|q| q.name = Some("alpha".into())), &[]).await;
    check(q(|q| q.fuzzy_name = Some("alp".into())), &["id-a", "id-e"]).await;
    check(q(|q| q.fuzzy_name = Some("LPh".into())), &["id-a", "id-e"]).await;
    check(
        q(|q| q.fuzzy_name = Some("".into())),
        &["id-a", "id-e", "id-b", "id-c", "id-d"],
    )
    .await;
    // LIKE wildcards are literal: "a_1" must not match "betaX1", "%" only "gamma%2".
    check(q(|q| q.fuzzy_name = Some("a_1".into())), &["id-b"]).await;
    check(q(|q| q.fuzzy_name = Some("_".into())), &["id-b"]).await;
    check(q(|q| q.fuzzy_name = Some("%".into())), &["id-c"]).await;
    check(q(|q| q.fuzzy_name = Some("A%2".into())), &["id-c"]).await;
    check(q(|q| q.fuzzy_name = Some("\\".into())), &[]).await;
    check(
        q(|q| q.has_ref = Some("connection:x".into())),
        &["id-a", "id-c"],
    )
    .await;
    check(q(|q| q.has_ref = Some("fn:urn1".into())), &["id-c", "id-d"]).await;
    check(q(|q| q.has_ref = Some("connection".into())), &[]).await;
    check(
        q(|q| q.body_eq = vec![("type".into(), "RABBITMQ".into())]),
        &["id-a", "id-e", "id-c"],
    )
    .await;
    check(
        q(|q| q.body_eq = vec![("type".into(), "rabbitmq".into())]),
        &[],
    )
    .await;
    check(
        q(|q| {
            q.body_eq = vec![
                ("type".into(), "RABBITMQ".into()),
                ("description".into(), "Orders Queue".into()),
            ]
        }),
        &["id-a"],
    )
    .await;
    // Only string members match: numbers never equal their text.
    check(q(|q| q.body_eq = vec![("n".into(), "5".into())]), &[]).await;
    check(
        q(|q| q.body_eq = vec![("description".into(), "7".into())]),
        &[],
    )
    .await;
    // Keys are member names, never paths or SQL.
    check(
        q(|q| q.body_eq = vec![("x.y".into(), "dotted".into())]),
        &["id-e"],
    )
    .await;
    check(
        q(|q| q.body_eq = vec![("it's".into(), "q\"uote".into())]),
        &["id-e"],
    )
    .await;
    check(
        q(|q| q.body_eq = vec![("type' OR '1'='1".into(), "x".into())]),
        &[],
    )
    .await;
    check(
        q(|q| q.body_eq = vec![("$.type".into(), "RABBITMQ".into())]),
        &[],
    )
    .await;
    check(q(|q| q.body_eq = vec![("missing".into(), "".into())]), &[]).await;
    check(
        q(|q| q.body_contains = vec![("description".into(), "orders".into())]),
        &["id-a", "id-c"],
    )
    .await;
    check(
        q(|q| q.body_contains = vec![("description".into(), "QUEUE".into())]),
        &["id-a"],
    )
    .await;
    check(
        q(|q| q.body_contains = vec![("description".into(), "7".into())]),
        &[],
    )
    .await;
    check(
        q(|q| q.body_contains = vec![("description".into(), "%".into())]),
        &[],
    )
    .await;
    check(
        q(|q| {
            q.body_contains = vec![
                ("description".into(), "ord".into()),
                ("type".into(), "rabbit".into()),
            ]
        }),
        &["id-a", "id-c"],
    )
    .await;
    // Filters AND together.
    check(
        q(|q| {
            q.parent_id = Some("c2".into());
            q.body_eq = vec![("type".into(), "RABBITMQ".into())];
        }),
        &["id-e", "id-c"],
    )
    .await;
    check(
        q(|q| {
            q.fuzzy_name = Some("a".into());
            q.has_ref = Some("fn:urn1".into());
            q.body_contains = vec![("description".into(), "archive".into())];
        }),
        &["id-c"],
    )
    .await;

    // Sorting, ties broken by id in the same direction.
    let sorted = |sort: SortKey, descending: bool| ListQuery {
        sort,
        descending,
        ..ListQuery::default()
    };
    check(
        sorted(SortKey::CreatedAt, false),
        &["id-a", "id-e", "id-b", "id-c", "id-d"],
    )
    .await;
    check(
        sorted(SortKey::CreatedAt, true),
        &["id-d", "id-c", "id-b", "id-e", "id-a"],
    )
    .await;
    check(
        sorted(SortKey::UpdatedAt, false),
        &["id-e", "id-c", "id-d", "id-b", "id-a"],
    )
    .await;
    check(
        sorted(SortKey::UpdatedAt, true),
        &["id-a", "id-b", "id-d", "id-c", "id-e"],
    )
    .await;
    // Names compare bytewise: upper case first, 'X' (0x58) before '_' (0x5f).
    check(
        sorted(SortKey::Name, false),
        &["id-e", "id-a", "id-d", "id-b", "id-c"],
    )
    .await;
    check(
        sorted(SortKey::Name, true),
        &["id-c", "id-b", "id-d", "id-a", "id-e"],
    )
    .await;

    // Unnamed records sorted by name fall back to id.
    for id in ["u3", "u1", "u2"] {
        s.insert(&simple(p, Kind::Agency, id, ""), &[])
            .await
            .unwrap();
    }
    let (_, page) = s
        .list(p, Kind::Agency, &sorted(SortKey::Name, false))
        .await
        .unwrap();
    assert_eq!(ids(&page), ["u1", "u2", "u3"]);
    let (_, page) = s
        .list(p, Kind::Agency, &sorted(SortKey::Name, true))
        .await
        .unwrap();
    assert_eq!(ids(&page), ["u3", "u2", "u1"]);

    // Paging: total ignores offset/limit.
    let page_of = |offset: u64, limit: Option<u64>| ListQuery {
        offset,
        limit,
        ..ListQuery::default()
    };
    let expect_page = |q: ListQuery, total: u64, expect: &'static [&'static str]| async move {
        let (t, page) = run(q.clone()).await;
        assert_eq!((t, ids(&page)), (total, expect.to_vec()), "query {q:?}");
    };
    expect_page(page_of(1, Some(2)), 5, &["id-e", "id-b"]).await;
    expect_page(page_of(0, Some(1)), 5, &["id-a"]).await;
    expect_page(page_of(4, Some(10)), 5, &["id-d"]).await;
    expect_page(page_of(3, None), 5, &["id-c", "id-d"]).await;
    expect_page(page_of(10, Some(10)), 5, &[]).await;
    expect_page(page_of(0, Some(0)), 5, &[]).await;
    expect_page(page_of(u64::MAX, Some(u64::MAX)), 5, &[]).await;
    expect_page(
        ListQuery {
            descending: true,
            offset: 1,
            limit: Some(2),
            ..ListQuery::default()
        },
        5,
        &["id-c", "id-b"],
    )
    .await;
    expect_page(
        ListQuery {
            parent_id: Some("c1".into()),
            offset: 1,
            limit: Some(1),
            ..ListQuery::default()
        },
        2,
        &["id-b"],
    )
    .await;
    // Every page of one listing follows the same order.
    let mut seen = Vec::new();
    for off in 0..5 {
        let q = ListQuery {
            sort: SortKey::UpdatedAt,
            offset: off,
            limit: Some(1),
            ..ListQuery::default()
        };
        seen.extend(run(q).await.1.into_iter().map(|r| r.id));
    }
    assert_eq!(seen, ["id-e", "id-c", "id-d", "id-b", "id-a"]);

    // Case folding is ASCII-only and name order is bytewise on both backends.
    let es = Kind::EventStream;
    for (id, name, d) in [
        ("n1", "Äpfel", "Größe"),
        ("n2", "äpfel-2", "GRÖSSE"),
        ("n3", "APFEL", "x"),
    ] {
        let r = rec(p, es, id, name, None, 1, 1, json!({ "d": d }), &[]);
        s.insert(&r, &[]).await.unwrap();
    }
    let names = |q: ListQuery| async move {
        let (_, page) = s.list(p, es, &q).await.unwrap();
        ids(&page).into_iter().map(String::from).collect::<Vec<_>>()
    };
    let fuzzy = |f: &str| ListQuery {
        fuzzy_name: Some(f.into()),
        ..ListQuery::default()
    };
    assert_eq!(names(fuzzy("äp")).await, ["n2"]);
    assert_eq!(names(fuzzy("apf")).await, ["n3"]);
    assert_eq!(names(fuzzy("PFEL")).await, ["n1", "n2", "n3"]);
    let contains = |v: &str| ListQuery {
        body_contains: vec![("d".into(), v.into())],
        ..ListQuery::default()
    };
    assert_eq!(names(contains("größe")).await, ["n1"]);
    assert_eq!(names(contains("grÖsse")).await, ["n2"]);
    assert!(names(contains("grösse")).await.is_empty());
    assert_eq!(
        names(sorted(SortKey::Name, false)).await,
        ["n3", "n1", "n2"]
    );

    let (t, page) = s.list("nobody", k, &ListQuery::default()).await.unwrap();
    assert_eq!((t, page.len()), (0, 0));

    // count
    assert_eq!(s.count(p, k, None).await.unwrap(), 5);
    assert_eq!(s.count(p, k, Some("c1")).await.unwrap(), 2);
    assert_eq!(s.count(p, k, Some("c2")).await.unwrap(), 2);
    assert_eq!(s.count(p, k, Some("zz")).await.unwrap(), 0);
    assert_eq!(s.count(p, Kind::Channel, None).await.unwrap(), 1);
    assert_eq!(s.count("nobody", k, None).await.unwrap(), 0);
}

async fn references(s: &dyn MetaStore) {
    let p = "refs";
    let a = rec(
        p,
        Kind::Source,
        "s-a",
        "a",
        None,
        1,
        1,
        json!({}),
        &["connection:x"],
    );
    let b = rec(
        p,
        Kind::Source,
        "s-b",
        "b",
        None,
        1,
        1,
        json!({}),
        &["connection:x", "fn:1"],
    );
    let sub = rec(
        p,
        Kind::Subscription,
        "sub-1",
        "sub",
        Some("ch"),
        1,
        1,
        json!({}),
        &["fn:1", "connection:x"],
    );
    let other = rec(
        "refs-other",
        Kind::Source,
        "s-o",
        "o",
        None,
        1,
        1,
        json!({}),
        &["connection:x"],
    );
    let other_sub = rec(
        "refs-other",
        Kind::Subscription,
        "sub-o",
        "so",
        None,
        1,
        1,
        json!({}),
        &["connection:x"],
    );
    for r in [&a, &b, &sub, &other, &other_sub] {
        s.insert(r, &[]).await.unwrap();
    }

    let got = s.referencing(p, "connection:x").await.unwrap();
    assert_eq!(
        got,
        vec![a.clone(), b.clone(), sub.clone()],
        "ordered by kind, id"
    );
    assert_eq!(
        ids(&s.referencing(p, "fn:1").await.unwrap()),
        ["s-b", "sub-1"]
    );
    assert!(s.referencing(p, "connection").await.unwrap().is_empty());
    assert!(s
        .referencing("nobody", "connection:x")
        .await
        .unwrap()
        .is_empty());

    let g = s
        .referencing_global(Kind::Source, "connection:x")
        .await
        .unwrap();
    let mut gids: Vec<(&str, &str)> = g
        .iter()
        .map(|r| (r.project_id.as_str(), r.id.as_str()))
        .collect();
    gids.retain(|(proj, _)| proj.starts_with("refs"));
    assert_eq!(
        gids,
        [("refs", "s-a"), ("refs", "s-b"), ("refs-other", "s-o")]
    );
    assert_eq!(
        ids(&s
            .referencing_global(Kind::Subscription, "connection:x")
            .await
            .unwrap()),
        ["sub-1", "sub-o"]
    );
    assert!(s
        .referencing_global(Kind::Channel, "connection:x")
        .await
        .unwrap()
        .is_empty());

    // Every record of a kind, across projects, in (project, id) order.
    let all = s.list_global(Kind::Source).await.unwrap();
    let mut gids: Vec<(&str, &str)> = all
        .iter()
        .map(|r| (r.project_id.as_str(), r.id.as_str()))
        .collect();
    gids.retain(|(proj, _)| proj.starts_with("refs"));
    assert_eq!(
        gids,
        [("refs", "s-a"), ("refs", "s-b"), ("refs-other", "s-o")]
    );
    assert_eq!(all.iter().find(|r| r.id == "s-b"), Some(&b));
    let subs = s.list_global(Kind::Subscription).await.unwrap();
    assert!(subs.iter().all(|r| r.kind == Kind::Subscription));
    assert!(subs.iter().any(|r| r.id == "sub-o"));

    // Refs are replaced as a whole on update.
    let mut a2 = a.clone();
    a2.refs = vec!["fn:2".into()];
    assert!(s.update(&a2).await.unwrap());
    assert_eq!(
        ids(&s.referencing(p, "connection:x").await.unwrap()),
        ["s-b", "sub-1"]
    );
    assert_eq!(ids(&s.referencing(p, "fn:2").await.unwrap()), ["s-a"]);
    let mut a3 = a2.clone();
    a3.refs = vec![];
    assert!(s.update(&a3).await.unwrap());
    assert!(s.referencing(p, "fn:2").await.unwrap().is_empty());
    assert_eq!(
        s.get(p, Kind::Source, "s-a").await.unwrap().unwrap().refs,
        Vec::<String>::new()
    );

    // Removed with the record; a new record under the same id starts clean.
    assert!(s.delete(p, Kind::Source, "s-b").await.unwrap());
    assert_eq!(
        ids(&s.referencing(p, "connection:x").await.unwrap()),
        ["sub-1"]
    );
    assert!(s
        .referencing_global(Kind::Source, "fn:1")
        .await
        .unwrap()
        .is_empty());
    let b_again = simple(p, Kind::Source, "s-b", "b");
    s.insert(&b_again, &[]).await.unwrap();
    assert_eq!(s.get(p, Kind::Source, "s-b").await.unwrap(), Some(b_again));

    // Order and duplicates of refs round-trip; a record is listed once however often it refers.
    let dupref = rec(
        p,
        Kind::Endpoint,
        "e-1",
        "e",
        None,
        1,
        1,
        json!({}),
        &["z", "k", "a", "k"],
    );
    s.insert(&dupref, &[]).await.unwrap();
    assert_eq!(
        s.get(p, Kind::Endpoint, "e-1").await.unwrap(),
        Some(dupref.clone())
    );
    assert_eq!(ids(&s.referencing(p, "k").await.unwrap()), ["e-1"]);
    let lq = ListQuery {
        has_ref: Some("k".into()),
        ..ListQuery::default()
    };
    let (t, page) = s.list(p, Kind::Endpoint, &lq).await.unwrap();
    assert_eq!((t, ids(&page)), (1, vec!["e-1"]));

    // Many refs (batching).
    let many: Vec<String> = (0..1200).map(|i| format!("m:{i}")).collect();
    let mut big = simple(p, Kind::Endpoint, "e-2", "e2");
    big.refs = many.clone();
    s.insert(&big, &[]).await.unwrap();
    assert_eq!(
        s.get(p, Kind::Endpoint, "e-2").await.unwrap().unwrap().refs,
        many
    );
    assert_eq!(ids(&s.referencing(p, "m:1199").await.unwrap()), ["e-2"]);
}

fn quota(name: &'static str, kind: Kind, max: u64) -> QuotaCheck {
    QuotaCheck {
        quota: name,
        kind,
        parent_id: None,
        body_eq: None,
        max,
    }
}

async fn quotas(s: &dyn MetaStore) {
    let p = "quota";
    let q = [quota("CHANNEL", Kind::Channel, 2)];
    s.insert(&simple(p, Kind::Channel, "c1", "c1"), &q)
        .await
        .unwrap();
    s.insert(&simple(p, Kind::Channel, "c2", "c2"), &q)
        .await
        .unwrap();
    let mut c3 = simple(p, Kind::Channel, "c3", "c3");
    c3.refs = vec!["quota:ref".into()];
    assert!(matches!(
        s.insert(&c3, &q).await,
        Err(StoreError::Quota("CHANNEL"))
    ));
    assert!(s.get(p, Kind::Channel, "c3").await.unwrap().is_none());
    assert!(s.referencing(p, "quota:ref").await.unwrap().is_empty());
    assert_eq!(s.count(p, Kind::Channel, None).await.unwrap(), 2);
    // Other projects have their own count.
    s.insert(&simple("quota-other", Kind::Channel, "c1", "c1"), &q)
        .await
        .unwrap();
    // Deleting frees quota immediately.
    assert!(s.delete(p, Kind::Channel, "c1").await.unwrap());
    s.insert(&c3, &q).await.unwrap();
    assert!(matches!(
        s.insert(&simple(p, Kind::Channel, "c4", "c4"), &q).await,
        Err(StoreError::Quota("CHANNEL"))
    ));
    assert!(matches!(
        s.insert(
            &simple(p, Kind::Endpoint, "e1", "e1"),
            &[quota("PRIVATE_ENDPOINT", Kind::Endpoint, 0)]
        )
        .await,
        Err(StoreError::Quota("PRIVATE_ENDPOINT"))
    ));

    // Per-parent quota.
    let per = |parent: &str| QuotaCheck {
        parent_id: Some(parent.into()),
        ..quota("CHANNEL_SUBSCRIPTION", Kind::Subscription, 2)
    };
    let sub = |id: &str, parent: &str| {
        rec(
            p,
            Kind::Subscription,
            id,
            id,
            Some(parent),
            1,
            1,
            json!({}),
            &[],
        )
    };
    s.insert(&sub("s1", "ch1"), &[per("ch1")]).await.unwrap();
    s.insert(&sub("s2", "ch1"), &[per("ch1")]).await.unwrap();
    assert!(matches!(
        s.insert(&sub("s3", "ch1"), &[per("ch1")]).await,
        Err(StoreError::Quota("CHANNEL_SUBSCRIPTION"))
    ));
    s.insert(&sub("s3", "ch2"), &[per("ch2")]).await.unwrap();
    assert_eq!(
        s.count(p, Kind::Subscription, Some("ch1")).await.unwrap(),
        2
    );
    assert_eq!(
        s.count(p, Kind::Subscription, Some("ch2")).await.unwrap(),
        1
    );
    // Project-wide quota together with the per-parent one: the first exceeded is reported.
    let both = |parent: &str| [quota("SUBSCRIPTION", Kind::Subscription, 3), per(parent)];
    assert!(matches!(
        s.insert(&sub("s4", "ch3"), &both("ch3")).await,
        Err(StoreError::Quota("SUBSCRIPTION"))
    ));

    // body_eq quota (per source type) next to the kind-wide one.
    let src = |id: &str, ty: &str| {
        rec(
            p,
            Kind::Source,
            id,
            id,
            None,
            1,
            1,
            json!({"type": ty}),
            &[],
        )
    };
    let rabbit = || QuotaCheck {
        body_eq: Some(("type".into(), "RABBITMQ".into())),
        ..quota("SOURCE_RABBITMQ", Kind::Source, 1)
    };
    let checks = || [quota("SOURCE", Kind::Source, 3), rabbit()];
    s.insert(&src("r1", "RABBITMQ"), &checks()).await.unwrap();
    assert!(matches!(
        s.insert(&src("r2", "RABBITMQ"), &checks()).await,
        Err(StoreError::Quota("SOURCE_RABBITMQ"))
    ));
    // A record outside the filter does not raise that count.
    s.insert(&src("k1", "ROCKETMQ"), &checks()).await.unwrap();
    s.insert(&src("k2", "ROCKETMQ"), &checks()).await.unwrap();
    assert!(matches!(
        s.insert(&src("k3", "ROCKETMQ"), &checks()).await,
        Err(StoreError::Quota("SOURCE"))
    ));
    assert!(s.get(p, Kind::Source, "r2").await.unwrap().is_none());
    assert!(s.get(p, Kind::Source, "k3").await.unwrap().is_none());
    assert_eq!(s.count(p, Kind::Source, None).await.unwrap(), 3);
}

async fn concurrent_quota(store: Arc<dyn MetaStore>) {
    let p = "quota-race";
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let st = store.clone();
        set.spawn(async move {
            let r = rec(
                p,
                Kind::Connection,
                &format!("conn-{i:02}"),
                &format!("conn-{i:02}"),
                None,
                i,
                i,
                json!({"i": i}),
                &["race"],
            );
            st.insert(&r, &[quota("CONNECTION", Kind::Connection, 5)])
                .await
        });
    }
    let (mut ok, mut quota_err) = (0, 0);
    while let Some(res) = set.join_next().await {
        match res.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::Quota("CONNECTION")) => quota_err += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((ok, quota_err), (5, 15));
    assert_eq!(store.count(p, Kind::Connection, None).await.unwrap(), 5);
    assert_eq!(store.referencing(p, "race").await.unwrap().len(), 5);

    // Per-parent race: two channels, 10 inserts each, max 3 per channel.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let st = store.clone();
        set.spawn(async move {
            let parent = if i % 2 == 0 { "even" } else { "odd" };
            let r = rec(
                p,
                Kind::Subscription,
                &format!("sub-{i:02}"),
                &format!("sub-{i:02}"),
                Some(parent),
                i,
                i,
                json!({}),
                &[],
            );
            let q = QuotaCheck {
                parent_id: Some(parent.into()),
                ..quota("CHANNEL_SUBSCRIPTION", Kind::Subscription, 3)
            };
            st.insert(&r, &[q]).await.is_ok()
        });
    }
    let mut ok = 0;
    while let Some(res) = set.join_next().await {
        ok += usize::from(res.unwrap());
    }
    assert_eq!(ok, 6);
    assert_eq!(
        store
            .count(p, Kind::Subscription, Some("even"))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .count(p, Kind::Subscription, Some("odd"))
            .await
            .unwrap(),
        3
    );
}

async fn concurrent_duplicates(store: Arc<dyn MetaStore>) {
    let p = "dup-race";
    let mut set = tokio::task::JoinSet::new();
    for i in 0..10 {
        let st = store.clone();
        set.spawn(async move {
            st.insert(
                &simple(p, Kind::Schema, &format!("id-{i}"), "contended"),
                &[],
            )
            .await
        });
    }
    let (mut ok, mut dup) = (0, 0);
    while let Some(res) = set.join_next().await {
        match res.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::Duplicate) => dup += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((ok, dup), (1, 9));
}

async fn tokens(s: &dyn MetaStore) {
    let h1 = "a".repeat(64);
    let h2 = "b".repeat(64);
    let h3 = "c".repeat(64);
    assert_eq!(s.get_token(&h1).await.unwrap(), None);
    s.put_token(&h1, "proj-1", "AK1", 1_000).await.unwrap();
    assert_eq!(
        s.get_token(&h1).await.unwrap(),
        Some(("proj-1".into(), "AK1".into(), 1_000))
    );
    // Put again replaces.
    s.put_token(&h1, "proj-2", "AK2", 5_000).await.unwrap();
    assert_eq!(
        s.get_token(&h1).await.unwrap(),
        Some(("proj-2".into(), "AK2".into(), 5_000))
    );
    s.put_token(&h2, "proj-1", "AK1", 2_000).await.unwrap();
    s.put_token(&h3, "proj-1", "AK1", 3_000).await.unwrap();
    assert_eq!(s.purge_expired_tokens(1_999).await.unwrap(), 0);
    // Expiry is inclusive: expires_at == now is expired.
    assert_eq!(s.purge_expired_tokens(2_000).await.unwrap(), 1);
    assert_eq!(s.get_token(&h2).await.unwrap(), None);
    assert!(s.get_token(&h3).await.unwrap().is_some());
    assert_eq!(s.purge_expired_tokens(10_000).await.unwrap(), 2);
    assert_eq!(s.get_token(&h1).await.unwrap(), None);
    assert_eq!(s.purge_expired_tokens(10_000).await.unwrap(), 0);
}

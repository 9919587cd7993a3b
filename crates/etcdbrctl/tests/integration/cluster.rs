//! `etcdbrctl server` beside each member of a real etcd cluster: only the leader's sidecar backs
//! up and a new leader takes over without a gap in the chain; a member that lost its data is
//! replaced by a learner its sidecar promotes; a new member is added as a learner on scale-up.

use std::time::{Duration, Instant};

use crate::common::sidecar::{Sidecar, json, leader_index};
use crate::common::wait_for_backup;
use testkit::{Etcd, EtcdVersion};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_one_backs_up_and_a_new_leader_takes_over() {
    let mut members = Etcd::start_cluster(EtcdVersion::V35, 3).await;
    let home = tempfile::tempdir().unwrap();
    // Every sidecar on the same port, each on its member's address (as in pods).
    let port = testkit::free_port();
    let sidecars: Vec<Sidecar> = members
        .iter()
        .enumerate()
        .map(|(i, m)| Sidecar::start(home.path(), &format!("m{i}"), m, port, &[]))
        .collect();
    let mut alive = vec![true; 3];
    let leader = leader_index(&members, &alive).await;
    sidecars[leader].wait_health(200).await;
    wait_for_backup(home.path(), 1).await;
    let mut c = members[leader].client().await.unwrap();
    for i in 0..50 {
        c.put(format!("/a/{i}"), "v", None).await.unwrap();
    }
    let rev = members[leader].revision().await;
    wait_for_backup(home.path(), rev).await;
    for (i, s) in sidecars.iter().enumerate() {
        let saved = s.log().matches("Successfully saved").count();
        if i == leader {
            assert!(
                saved >= 2,
                "the leader's sidecar saved {saved}:\n{}",
                s.log()
            );
        } else {
            assert_eq!(saved, 0, "follower m{i} uploaded:\n{}", s.log());
            assert_eq!(s.http("GET", "/healthz").0, 503);
        }
    }
    // A follower forwards snapshot requests to the leader's sidecar.
    let follower = (leader + 1) % 3;
    let (code, body) = sidecars[follower].http("GET", "/snapshot/latest");
    assert_eq!(code, 200, "{body}\n{}", sidecars[follower].log());
    assert!(json(&body)["fullSnapshot"]["snapName"].is_string());
    c.put("/fwd", "v", None).await.unwrap();
    let (code, body) = sidecars[follower].http("POST", "/snapshot/delta");
    assert_eq!(code, 200, "{body}");

    // The leader's etcd dies: another member leads, its sidecar takes over.
    members[leader].kill();
    alive[leader] = false;
    let new_leader = leader_index(&members, &alive).await;
    assert_ne!(new_leader, leader);
    sidecars[new_leader].wait_health(200).await;
    let mut c = members[new_leader].client().await.unwrap();
    for i in 0..50 {
        c.put(format!("/b/{i}"), "v", None).await.unwrap();
    }
    let rev = members[new_leader].revision().await;
    wait_for_backup(home.path(), rev).await;
    assert!(
        sidecars[new_leader]
            .log()
            .contains("Successfully saved delta snapshot"),
        "{}",
        sidecars[new_leader].log()
    );

    // The chain restores (a gap would fail it) to the cluster's state.
    crate::common::assert_restores(home.path(), &mut c, rev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_lost_its_data_is_replaced_by_a_learner_and_promoted() {
    let mut members = Etcd::start_cluster(EtcdVersion::V35, 3).await;
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("etcd.conf.yaml.in"),
        crate::common::cluster_conf(&members),
    )
    .unwrap();
    let port = testkit::free_port();
    let sidecars: Vec<Sidecar> = members
        .iter()
        .enumerate()
        .map(|(i, m)| Sidecar::start(home.path(), &format!("m{i}"), m, port, &[]))
        .collect();
    let leader = leader_index(&members, &[true; 3]).await;
    let mut c = members[leader].client().await.unwrap();
    for i in 0..200 {
        c.put(format!("/k/{i:03}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    let rev = members[leader].revision().await;
    sidecars[leader].wait_health(200).await;
    wait_for_backup(home.path(), rev).await;

    // A follower's volume is lost: its etcd stops and its data dir is gone.
    let f = (leader + 1) % 3;
    members[f].kill();
    sidecars[f].wait_serving().await;
    let (code, _) = sidecars[f].http("GET", "/initialization/start?mode=sanity");
    assert_eq!(code, 200);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, status) = sidecars[f].http("GET", "/initialization/status");
        if status == "Successful" {
            break;
        }
        assert!(
            status != "Failed" && Instant::now() < deadline,
            "initialization {status}:\n{}",
            sidecars[f].log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Not restored from the store: removed and added back as a learner, data dir empty.
    let data = home.path().join(format!("m{f}-restored"));
    assert!(!data.exists(), "{}", sidecars[f].log());
    let list = c.member_list().await.unwrap();
    let me = list
        .members()
        .iter()
        .find(|m| m.peer_urls().contains(&members[f].peer_url))
        .unwrap_or_else(|| panic!("not re-added: {:?}\n{}", list.members(), sidecars[f].log()));
    assert!(me.is_learner(), "{me:?}");

    // etcd joins the existing cluster as that learner; the sidecar promotes it once in sync.
    members[f].start_on(&data, &["--initial-cluster-state=existing"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let list = c.member_list().await.unwrap();
        let m = list
            .members()
            .iter()
            .find(|m| m.peer_urls().contains(&members[f].peer_url))
            .unwrap();
        if !m.is_learner() && m.name() == format!("m{f}") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never promoted: {m:?}\n{}\netcd:\n{}",
            sidecars[f].log(),
            members[f].log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        sidecars[f].log().contains("has been promoted"),
        "{}",
        sidecars[f].log()
    );
    // The replaced member serves the cluster's data.
    let mut fc = members[f].client().await.unwrap();
    let got = fc.get("/k/199", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"v199");
    // Once it has applied the cluster's revision, its history hashes the same.
    let now = members[leader].revision().await;
    let want = c.hash_kv(now).await.unwrap().hash();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match fc.hash_kv(now).await {
            Ok(h) if h.hash() == want => break,
            other => assert!(
                Instant::now() < deadline,
                "hashkv at {now}: {other:?}, want {want}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_is_added_as_a_learner_on_scale_up() {
    let members = Etcd::start_cluster(EtcdVersion::V35, 3).await;
    let home = tempfile::tempdir().unwrap();
    let mut new = Etcd::new_member(&members, home.path());
    let mut conf = crate::common::cluster_conf(&members);
    // The configuration druid renders for four replicas.
    conf = conf.replace(
        &format!("m2={}", members[2].peer_url),
        &format!("m2={},m3={}", members[2].peer_url, new.peer_url),
    );
    conf = conf.replace(
        "advertise-client-urls:\n",
        &format!("  m3:\n  - {}\nadvertise-client-urls:\n", new.peer_url),
    );
    conf.push_str(&format!("  m3:\n  - {}\n", new.client_url));
    std::fs::write(home.path().join("etcd.conf.yaml.in"), conf).unwrap();
    let sc = Sidecar::start(home.path(), "m3", &new, testkit::free_port(), &[]);
    // Whatever the data dir holds is wiped: the learner copies the data from the leader.
    let data = home.path().join("m3-restored");
    std::fs::create_dir_all(data.join("member/wal")).unwrap();
    sc.wait_serving().await;
    assert_eq!(sc.http("GET", "/initialization/start").0, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, status) = sc.http("GET", "/initialization/status");
        if status == "Successful" {
            break;
        }
        assert!(
            status != "Failed" && Instant::now() < deadline,
            "initialization {status}:\n{}",
            sc.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(!data.exists(), "{}", sc.log());
    let mut c = members[0].client().await.unwrap();
    let list = c.member_list().await.unwrap();
    assert_eq!(list.members().len(), 4, "{:?}", list.members());
    assert!(
        list.members()
            .iter()
            .any(|m| m.is_learner() && m.peer_urls().contains(&new.peer_url)),
        "{:?}\n{}",
        list.members(),
        sc.log()
    );
    new.start_on(&data, &["--initial-cluster-state=existing"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !c
        .member_list()
        .await
        .unwrap()
        .members()
        .iter()
        .any(|m| m.name() == "m3" && !m.is_learner())
    {
        assert!(
            Instant::now() < deadline,
            "never promoted:\n{}\netcd:\n{}",
            sc.log(),
            new.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The fault matrix's leader change during deltas (the original's #1043): leadership moves
/// twice while writes flow, so two sidecars may both store deltas for a while (overlapping,
/// same start revisions). The store must still restore to the cluster's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moving_during_deltas_still_restores_the_cluster() {
    let members = Etcd::start_cluster(EtcdVersion::V35, 3).await;
    let home = tempfile::tempdir().unwrap();
    let port = testkit::free_port();
    let sidecars: Vec<Sidecar> = members
        .iter()
        .enumerate()
        .map(|(i, m)| Sidecar::start(home.path(), &format!("m{i}"), m, port, &[]))
        .collect();
    let alive = [true; 3];
    let mut leader = leader_index(&members, &alive).await;
    sidecars[leader].wait_health(200).await;
    wait_for_backup(home.path(), 1).await;
    let writer = {
        let c = members[leader].client().await.unwrap();
        tokio::spawn(async move {
            let mut c = c;
            for i in 0..400 {
                // Another member may be electing: retry a write that fails meanwhile.
                while c.put(format!("/w/{i:03}"), "v", None).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let next = (leader + 1) % 3;
        let id = {
            let mut c = members[next].client().await.unwrap();
            c.status().await.unwrap().header().unwrap().member_id()
        };
        members[leader].etcdctl_ok(&["move-leader", &format!("{id:x}")]);
        leader = leader_index(&members, &alive).await;
        assert_eq!(leader, next);
        sidecars[leader].wait_health(200).await;
    }
    writer.await.unwrap();
    let rev = members[leader].revision().await;
    wait_for_backup(home.path(), rev).await;
    let savers = sidecars
        .iter()
        .filter(|s| s.log().contains("Successfully saved delta snapshot"))
        .count();
    assert!(savers >= 2, "the deltas came from more than one sidecar");

    let mut c = members[leader].client().await.unwrap();
    crate::common::assert_restores(home.path(), &mut c, rev).await;
}

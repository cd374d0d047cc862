//! The newcomer's tour works (`bsfg demo --fast`): it exits 0, shows both gates going
//! `autonomous` during the partition and `normal` again after the heal, and its summary reports
//! no lost, no duplicated and no reordered fact in either direction. So does the estate's tour
//! (`--estate`): the plant-a leg alone goes down and comes back, the status per hop is shown, and
//! every flow through the DMZ arrives whole at its final zone and nowhere else. And the HA zone's
//! (`--ha`): the active instance of plant-a is killed, the standby takes over, nothing is lost.

use std::{
    io::Read,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// The fast tour takes about 15 s; this leaves room for a loaded machine.
const LIMIT: Duration = Duration::from_secs(90);

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `bsfg demo --fast ARGS` in a fresh directory, killing it if it outlives [`LIMIT`].
fn run_demo(dir: &std::path::Path, args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bsfg"))
        .args(["demo", "--fast"])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bsfg demo");
    let stdout = reader(child.stdout.take().expect("stdout piped"));
    let stderr = reader(child.stderr.take().expect("stderr piped"));
    let success = wait(&mut child);
    Run {
        success,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn reader(mut stream: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    })
}

fn wait(child: &mut Child) -> bool {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for bsfg demo") {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `text` has a line showing `zone`'s gate entering `state`.
fn gate_enters(text: &str, zone: &str, state: &str) -> bool {
    let (subject, arrow) = (format!("{zone}'s gate toward"), format!("→ {state} ("));
    text.lines()
        .any(|line| line.contains(&subject) && line.contains(&arrow))
}

#[test]
fn the_fast_tour_shows_partition_and_heal_and_loses_nothing() {
    let dir = tempfile::Builder::new()
        .prefix("bsfg-demo-test-")
        .tempdir()
        .expect("tempdir");
    let run = run_demo(dir.path(), &[]);
    let out = &run.stdout;
    let context = format!("stdout:\n{out}\nstderr:\n{}", run.stderr);
    assert!(run.success, "bsfg demo --fast exits 0 within {LIMIT:?}\n{context}");

    let partition = out.find("phase 2/3: partition").expect("the partition is narrated");
    let heal = out.find("phase 3/3: heal").expect("the heal is narrated");
    for zone in ["enterprise", "plant-a"] {
        assert!(
            gate_enters(&out[partition..heal], zone, "autonomous"),
            "{zone}'s gate goes autonomous during the partition\n{context}"
        );
        assert!(
            gate_enters(&out[heal..], zone, "normal"),
            "{zone}'s gate is normal again after the heal\n{context}"
        );
    }

    let summary = out.find("\nsummary").expect("a summary is printed");
    for direction in ["enterprise → plant-a", "plant-a → enterprise"] {
        let line = out[summary..]
            .lines()
            .find(|l| l.trim_start().starts_with(direction))
            .unwrap_or_else(|| panic!("the summary has a line for {direction}\n{context}"));
        assert!(
            line.ends_with("out of order 0, duplicates 0, lost 0"),
            "{direction}: nothing out of order, lost or duplicated: {line}\n{context}"
        );
    }
    assert!(
        out.contains(&dir.path().display().to_string()),
        "the directory with the logs is shown"
    );
}

/// The summary line of each flow says nothing was lost or duplicated.
fn assert_whole(out: &str, flows: &[&str], context: &str) {
    let summary = out.find("\nsummary").expect("a summary is printed");
    for flow in flows {
        let line = out[summary..]
            .lines()
            .find(|l| l.trim_start().starts_with(flow))
            .unwrap_or_else(|| panic!("the summary has a line for {flow}\n{context}"));
        assert!(line.ends_with("duplicates 0, lost 0"), "{flow}: {line}\n{context}");
    }
}

#[test]
fn the_estate_tour_cuts_one_leg_shows_each_hop_and_delivers_every_flow_through_the_dmz() {
    let dir = tempfile::Builder::new()
        .prefix("bsfg-demo-estate-")
        .tempdir()
        .expect("tempdir");
    let run = run_demo(dir.path(), &["--estate", "--rate", "50"]);
    let out = &run.stdout;
    let context = format!("stdout:\n{out}\nstderr:\n{}", run.stderr);
    assert!(
        run.success,
        "bsfg demo --estate --fast exits 0 within {LIMIT:?}\n{context}"
    );
    let partition = out.find("phase 2/3: partition").expect("the partition is narrated");
    let heal = out.find("phase 3/3: heal").expect("the heal is narrated");
    assert!(gate_enters(&out[partition..heal], "plant-a", "autonomous"), "{context}");
    assert!(gate_enters(&out[partition..heal], "idmz", "autonomous"), "{context}");
    assert!(
        !gate_enters(&out[partition..heal], "plant-b", "autonomous"),
        "only the plant-a leg is cut\n{context}"
    );
    assert!(gate_enters(&out[heal..], "plant-a", "normal"), "{context}");
    let hops = out[partition..heal]
        .find("status per hop")
        .expect("the status per hop is shown");
    let waiting = out[partition + hops..heal]
        .lines()
        .find(|l| l.trim_start().starts_with("plant-a → idmz: autonomous"));
    assert!(waiting.is_some(), "the cut leg is shown autonomous\n{context}");
    assert_whole(
        out,
        &[
            "enterprise → plant-a",
            "plant-a → enterprise",
            "enterprise → plant-b",
            "plant-b → enterprise",
        ],
        &context,
    );
    assert!(out.contains("(the DMZ included): 0"), "{context}");
    assert!(out.contains("arrived exactly once at its final zone"), "{context}");
}

#[test]
fn the_ha_tour_kills_the_active_instance_and_the_standby_takes_over_losing_nothing() {
    let dir = tempfile::Builder::new()
        .prefix("bsfg-demo-ha-")
        .tempdir()
        .expect("tempdir");
    let run = run_demo(dir.path(), &["--ha", "--rate", "100"]);
    let out = &run.stdout;
    let context = format!("stdout:\n{out}\nstderr:\n{}", run.stderr);
    assert!(run.success, "bsfg demo --ha --fast exits 0 within {LIMIT:?}\n{context}");
    let failover = out.find("phase 2/3: failover").expect("the failover is narrated");
    let killed = out[failover..]
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("killing "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the killed instance is named\n{context}"));
    let standby = ["plant-a-1", "plant-a-2"]
        .into_iter()
        .find(|i| *i != killed)
        .unwrap_or_else(|| panic!("{killed} is an instance of plant-a\n{context}"));
    let summary = out.find("\nsummary").expect("a summary is printed");
    let line = out[summary..]
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("failover: "))
        .unwrap_or_else(|| panic!("the summary has a failover line\n{context}"));
    assert!(
        line.starts_with(&format!("{standby} active ")) && line.contains(&format!("after {killed} was killed")),
        "the standby took over: {line}\n{context}"
    );
    assert!(
        !line.contains(" - "),
        "both takeover times were measured: {line}\n{context}"
    );
    assert_whole(out, &["enterprise → plant-a", "plant-a → enterprise"], &context);
    assert!(out.contains("the failover lost nothing"), "{context}");
}

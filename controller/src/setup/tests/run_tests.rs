//! Detection on fixture trees; setup, idempotence and rollback against a fake root.

use super::fake::FakeSystem;
use super::fixture::{fresh_image, legacy_box};
use crate::setup::actions::{plan, Action};
use crate::setup::assets::{self, Paths};
use crate::setup::detect::{detect, is_audio_unit, mentions_run_pipewire};
use crate::setup::journal::{Journal, JOURNAL_PATH};
use crate::setup::root::Root;
use crate::setup::{rollback, setup, Options};

fn opts(root: &std::path::Path, dry_run: bool) -> Options {
    Options {
        user: "mugge".into(),
        root: root.to_path_buf(),
        dry_run,
        live: false,
        paths: Paths::default(),
    }
}

fn run(root: &std::path::Path, fake: &FakeSystem, dry_run: bool) -> (Vec<String>, String) {
    let mut out = Vec::new();
    let outcome = setup(&opts(root, dry_run), fake, &mut out).expect("setup runs");
    (outcome.changes, String::from_utf8(out).unwrap())
}

#[test]
fn detects_the_legacy_system_mode_stack() {
    let r = legacy_box("detect-legacy");
    let s = detect(&Root::new(&r.0), "mugge");
    let units: Vec<(&str, bool)> = s
        .system_units
        .iter()
        .map(|u| (u.name.as_str(), u.enabled))
        .collect();
    assert_eq!(
        units,
        vec![
            ("pipewire-system.service", true),
            ("wireplumber-system.service", true)
        ],
        "masked units are neither audio units nor enabled"
    );
    let refs: Vec<String> = s
        .run_pipewire_refs
        .iter()
        .map(|r| format!("{}:{}", r.path.display(), r.line))
        .collect();
    assert_eq!(
        refs,
        vec![
            "/etc/systemd/system/media-bridge-intercom.service:3",
            // The .wants link is not scanned twice; the unit file is.
            "/etc/systemd/system/pipewire-system.service:5",
            "/usr/local/bin/media-bridge-intercom-launcher:2",
        ]
    );
    assert_eq!(s.user, None);
    assert_eq!(s.missing_groups, vec!["render"]);
    assert_eq!(
        s.groups_without_user,
        vec!["audio", "video", "render", "input"]
    );
    assert!(!s.linger);
    assert_eq!(
        s.missing_packages,
        Some(vec![
            "pipewire-pulse".to_string(),
            "dbus-user-session".into(),
            "pulseaudio-utils".into()
        ])
    );
}

#[test]
fn detects_an_existing_user_its_groups_and_linger() {
    let r = fresh_image("detect-pi");
    r.write("/var/lib/systemd/linger/pi", "");
    let s = detect(&Root::new(&r.0), "pi");
    let u = s.user.as_ref().expect("pi exists");
    assert_eq!((u.uid, u.home.to_str().unwrap()), (1000, "/home/pi"));
    assert_eq!(s.groups_without_user, vec!["render", "input"]);
    assert!(s.linger);
    assert!(s.system_units.is_empty());
    assert!(
        s.run_pipewire_refs.is_empty(),
        "a per-user socket path is not a /run/pipewire reference: {:?}",
        s.run_pipewire_refs
    );
}

#[test]
fn no_dpkg_database_means_packages_unknown_not_missing() {
    let r = fresh_image("detect-nodpkg");
    std::fs::remove_file(r.0.join("var/lib/dpkg/status")).unwrap();
    let s = detect(&Root::new(&r.0), "mugge");
    assert_eq!(s.missing_packages, None);
    assert!(!plan(&Root::new(&r.0), &s, "mugge", &Paths::default())
        .iter()
        .any(|a| matches!(a, Action::InstallPackages(_))));
}

#[test]
fn audio_units_are_recognised_by_name_or_exec_line() {
    assert!(is_audio_unit("pipewire-system.service", ""));
    assert!(is_audio_unit(
        "pa.service",
        "[Service]\nExecStart=-/usr/bin/pipewire-pulse -v\n"
    ));
    assert!(is_audio_unit(
        "x.service",
        "ExecStartPre=@/usr/bin/wireplumber wp\n"
    ));
    assert!(!is_audio_unit(
        "x.service",
        "ExecStart=/usr/bin/pipewire-helper\nDescription=pipewire\n"
    ));
    assert!(mentions_run_pipewire(
        "Environment=XDG_RUNTIME_DIR=/run/pipewire"
    ));
    assert!(mentions_run_pipewire(
        "ln -s /var/run/pipewire/pipewire-0 x"
    ));
    assert!(!mentions_run_pipewire(
        "PIPEWIRE_REMOTE=/run/user/1000/pipewire-0"
    ));
}

#[test]
fn setup_installs_everything_and_a_second_run_changes_nothing() {
    let r = legacy_box("idempotent");
    let fake = FakeSystem::new(&r.0);
    fake.active
        .borrow_mut()
        .insert("pipewire-system.service".into());

    let (changes, out) = run(&r.0, &fake, false);
    assert!(!changes.is_empty());
    assert!(out.contains("detected: system-mode audio units: pipewire-system.service (enabled)"));

    // The user, its groups and linger, as the tools left them.
    let s = detect(&Root::new(&r.0), "mugge");
    let u = s.user.clone().expect("user created");
    assert!(u.uid >= 1000, "a regular account, got uid {}", u.uid);
    assert!(
        s.groups_without_user.is_empty(),
        "{:?}",
        s.groups_without_user
    );
    assert!(s.linger);
    assert_eq!(s.missing_packages, Some(vec![]));
    assert!(s.system_units.iter().all(|u| !u.enabled));
    assert!(!fake.active.borrow().contains("pipewire-system.service"));
    // The files.
    assert!(r
        .read(assets::LIMITS_PATH)
        .contains("@audio   -   rtprio     95"));
    for (name, text) in assets::WIREPLUMBER_FRAGMENTS {
        let p = format!("/home/mugge/.config/wireplumber/wireplumber.conf.d/{name}");
        assert_eq!(r.read(&p), text, "{p}");
    }
    let unit = r.read("/home/mugge/.config/systemd/user/mugge-controller.service");
    assert!(unit.contains("ExecStart=/usr/bin/mugge daemon"), "{unit}");
    assert_eq!(
        std::fs::read_link(
            r.0.join("home/mugge/.config/systemd/user/default.target.wants/mugge-filters.service")
        )
        .unwrap(),
        std::path::PathBuf::from("/home/mugge/.config/systemd/user/mugge-filters.service")
    );
    // pipewire.socket is enabled globally by the image; wireplumber is not, so the user gets it.
    assert!(!r.exists("/home/mugge/.config/systemd/user/sockets.target.wants/pipewire.socket"));
    assert!(r.exists("/home/mugge/.config/systemd/user/pipewire.service.wants/wireplumber.service"));

    let after_first = r.snapshot();
    let calls_after_first = fake.calls.borrow().len();
    let (changes, out) = run(&r.0, &fake, false);
    assert_eq!(changes, Vec::<String>::new(), "second run: {out}");
    assert!(out.contains("changes: none"));
    assert_eq!(r.snapshot(), after_first, "the second run changed the tree");
    assert_eq!(
        fake.calls.borrow().len(),
        calls_after_first,
        "the second run ran commands: {:?}",
        &fake.calls.borrow()[calls_after_first..]
    );
}

#[test]
fn rollback_restores_exactly_the_state_before_the_first_run() {
    let r = legacy_box("rollback");
    // Pre-existing files setup will replace: their contents and mode must come back.
    r.write(assets::LIMITS_PATH, "@audio - rtprio 50\n");
    std::fs::set_permissions(
        r.0.join(assets::LIMITS_PATH.trim_start_matches('/')),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let before = r.snapshot();
    let fake = FakeSystem::new(&r.0);
    fake.active
        .borrow_mut()
        .insert("pipewire-system.service".into());

    run(&r.0, &fake, false);
    // Someone edits an installed fragment; the second run repairs it. Rollback must still go back
    // to the state before the FIRST run, not to the edited file.
    let frag = "/home/mugge/.config/pipewire/pipewire.conf.d/60-mugge-virtual-devices.conf";
    r.write(frag, "edited by hand\n");
    let (changes, _) = run(&r.0, &fake, false);
    assert_eq!(changes, vec![format!("write {frag}")]);
    assert_ne!(r.snapshot(), before);

    let mut out = Vec::new();
    rollback(&opts(&r.0, false), &fake, &mut out).expect("rollback");
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        without_packages(r.snapshot()),
        without_packages(before),
        "rollback left differences:\n{out}"
    );
    // Packages stay installed (documented): removing them could take other software along.
    assert!(r
        .read("/var/lib/dpkg/status")
        .contains("Package: dbus-user-session"));
    assert!(
        fake.active.borrow().contains("pipewire-system.service"),
        "was running, runs again"
    );
    assert!(out.contains("keep packages installed by setup"));
    // Nothing left to roll back.
    let mut out = Vec::new();
    rollback(&opts(&r.0, false), &fake, &mut out).unwrap();
    assert!(String::from_utf8(out).unwrap().contains("nothing recorded"));
}

#[test]
fn dry_run_changes_nothing_and_runs_no_command() {
    let r = legacy_box("dry-run");
    let before = r.snapshot();
    let fake = FakeSystem::new(&r.0);
    let (changes, out) = run(&r.0, &fake, true);
    assert!(
        changes.contains(&"create the audio user".to_string()),
        "{changes:?}"
    );
    assert!(out.contains("change (would): disable and stop system unit pipewire-system.service"));
    assert!(out.contains("planned (dry run)"));
    assert_eq!(r.snapshot(), before);
    assert!(fake.calls.borrow().is_empty(), "{:?}", fake.calls.borrow());

    // A dry rollback after a real run also leaves everything as it is.
    run(&r.0, &fake, false);
    let after = r.snapshot();
    let n = fake.calls.borrow().len();
    let mut out = Vec::new();
    rollback(&opts(&r.0, true), &fake, &mut out).unwrap();
    assert!(String::from_utf8(out)
        .unwrap()
        .contains("rollback (would): run userdel --remove mugge"));
    assert_eq!(r.snapshot(), after);
    assert_eq!(fake.calls.borrow().len(), n);
}

#[test]
fn a_run_that_fails_half_way_is_journaled_and_rolls_back() {
    let r = legacy_box("half-way");
    let before = r.snapshot();
    let mut fake = FakeSystem::new(&r.0);
    fake.fail_on = Some("loginctl enable-linger".into());
    let mut out = Vec::new();
    let err = setup(&opts(&r.0, false), &fake, &mut out).unwrap_err();
    assert!(
        err.contains("enable lingering") && err.contains("injected failure"),
        "{err}"
    );
    let journal = Journal::load(&Root::new(&r.0))
        .unwrap()
        .expect("journal written");
    assert!(journal.entries.len() >= 5, "{:?}", journal.entries);
    fake.fail_on = None;
    let mut out = Vec::new();
    rollback(&opts(&r.0, false), &fake, &mut out).unwrap();
    assert_eq!(without_packages(r.snapshot()), without_packages(before));
}

fn without_packages(
    mut s: std::collections::BTreeMap<std::path::PathBuf, String>,
) -> std::collections::BTreeMap<std::path::PathBuf, String> {
    s.remove(std::path::Path::new("var/lib/dpkg/status"));
    s
}

#[test]
fn bad_input_changes_nothing() {
    let r = legacy_box("bad-input");
    let before = r.snapshot();
    let fake = FakeSystem::new(&r.0);
    for bad in ["", "Root", "a b", "../etc", "-rf"] {
        let mut o = opts(&r.0, false);
        o.user = bad.into();
        let err = setup(&o, &fake, &mut Vec::new()).unwrap_err();
        assert!(err.contains("not a valid user name"), "{bad}: {err}");
    }
    // A box set up for another user is not silently re-targeted.
    run(&r.0, &fake, false);
    let after = r.snapshot();
    let mut o = opts(&r.0, false);
    o.user = "other".into();
    let err = setup(&o, &fake, &mut Vec::new()).unwrap_err();
    assert!(err.contains("set up for user mugge"), "{err}");
    assert!(rollback(&o, &fake, &mut Vec::new()).is_err());
    assert_eq!(r.snapshot(), after);
    assert!(r.exists(JOURNAL_PATH));
    assert_ne!(before, after);
}

#[test]
fn installed_units_follow_the_user_session_rules() {
    let home = std::path::Path::new("/home/mugge");
    let units: Vec<_> = assets::assets(home, &Paths::default())
        .into_iter()
        .filter(|a| a.path.extension().is_some_and(|e| e == "service"))
        .filter(|a| a.path.to_string_lossy().contains("systemd"))
        .collect();
    assert_eq!(units.len(), 2);
    for u in units {
        // Directives only: comments may explain what the unit deliberately does not do.
        let t: String = u
            .contents
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let name = u.path.display();
        assert!(
            !t.contains("@bindir@") && !t.contains("@pipewire@"),
            "{name}"
        );
        assert!(!t.contains("User="), "{name}: no User= in user units");
        assert!(!t.contains("XDG_RUNTIME_DIR"), "{name}");
        assert!(!t.contains("ExecStartPost"), "{name}");
        assert!(!t.contains("/run/pipewire"), "{name}");
        assert!(t.contains("Restart=on-failure"), "{name}");
        assert!(
            t.contains("After=pipewire.service pipewire-pulse.service wireplumber.service"),
            "{name}"
        );
    }
}

#[test]
fn a_symlinked_directory_in_the_users_home_is_not_followed() {
    let r = fresh_image("symlink");
    // An existing user whose ~/.config points into /etc.
    r.write(
        "/etc/passwd",
        &format!(
            "{}mugge:x:1001:1001::/home/mugge:/bin/bash\n",
            super::fixture::PASSWD
        ),
    );
    r.mkdir("/home/mugge");
    r.mkdir("/etc/victim");
    r.link("/home/mugge/.config", "/etc/victim");
    let before = r.snapshot();
    let fake = FakeSystem::new(&r.0);
    let err = setup(&opts(&r.0, false), &fake, &mut Vec::new()).unwrap_err();
    assert!(err.contains("/home/mugge/.config is a symlink"), "{err}");
    assert_eq!(
        std::fs::read_dir(r.0.join("etc/victim")).unwrap().count(),
        0,
        "something was written through the link"
    );
    assert_eq!(r.snapshot(), before, "refused input must change nothing");
    assert!(fake.calls.borrow().is_empty());
}

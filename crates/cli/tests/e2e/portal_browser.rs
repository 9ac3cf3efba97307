//! The portal in a real browser: Debian's chromium, driven through chromium-driver over
//! WebDriver (fantoccini). A hospital, a patient and a doctor, each in their own browser and
//! portal, go through registration (the hospital onboards the doctor and registers the
//! patient), a grant, a record upload and download, the access log showing the read, a
//! notification appearing without a reload, a revocation and the denied read that follows,
//! and a break-glass, alarmed to the patient at once and reviewed by the hospital.
//! Screenshots of each main page are saved in `target/portal-screenshots/` for review.
//!
//! The test command installs `chromium` and `chromium-driver`; without them this test fails
//! and says so.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::{
    harness::*,
    portal::Portal,
    registry::{admitted_hospital, identity, wallet},
};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process (killed on drop).
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn driver() -> Driver {
    for path in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: the browser test needs Debian's chromium and chromium-driver \
             (scripts/test.sh installs them: apt-get install chromium chromium-driver)"
        );
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child, port);
    let deadline = Instant::now() + LIMIT;
    // (chromedriver keeps a connection open after answering, so only the port is probed.)
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not answer on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    driver
}

/// A headless chromium session with its own profile, downloading into `downloads`.
async fn browser(driver: &Driver, profile: &Path, downloads: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
            },
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a chromium session")
}

fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/portal-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(b: &Client, name: &str) {
    let png = b.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

async fn text(b: &Client, css: &str) -> String {
    match b.wait().at_most(LIMIT).for_element(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap(),
        Err(e) => {
            // What the page said instead (its message, if it shows one).
            let said = match b.find(Locator::Css(".flash")).await {
                Ok(flash) => flash.text().await.unwrap_or_default(),
                Err(_) => b.source().await.unwrap_or_default(),
            };
            panic!("no {css} ({e}); the page says: {said}")
        }
    }
}

/// The page's message of `kind` (`ok` or `error`) once it says `expected`. A form's (or a link's) click returns
/// before the browser has left the page it was on, so the previous page's message may still
/// be the one found: poll until the new one is shown, or fail saying what is shown instead
/// (an error message, or an upload's state, which the page shows beside its form).
async fn flash_saying(b: &Client, kind: &str, expected: &str) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        // (While the browser navigates, the element found may go stale: read it again.)
        if let Ok(flash) = b.find(Locator::Css(&format!("#flash.{kind}"))).await {
            let shown = flash.text().await.unwrap_or_default();
            if shown.contains(expected) {
                return shown;
            }
        }
        if Instant::now() >= deadline {
            let mut shown = Vec::new();
            for css in ["#flash", "#upload-state"] {
                if let Ok(element) = b.find(Locator::Css(css)).await {
                    shown.push(format!("{css}: {:?}", element.text().await.unwrap_or_default()));
                }
            }
            panic!("the page never said {expected:?} as {kind}; it shows {shown:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Logs in with the printed address and unlocks with the passphrase.
async fn unlock(b: &Client, portal: &Portal) {
    b.goto(&portal.login).await.unwrap();
    let field = b.wait().at_most(LIMIT).for_element(Locator::Id("passphrase")).await.unwrap();
    field.send_keys(PASS).await.unwrap();
    b.find(Locator::Id("unlock")).await.unwrap().click().await.unwrap();
    b.wait().at_most(LIMIT).for_element(Locator::Id("role")).await.unwrap();
}

/// Waits for a finished download in `dir` (no partial file left); its bytes.
fn downloaded(dir: &Path) -> Vec<u8> {
    let deadline = Instant::now() + LIMIT;
    loop {
        // (chromium's own hidden temporary files are not downloads.)
        let files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        let partial = files.iter().any(|f| f.extension().is_some_and(|x| x == "crdownload"));
        if let (false, [file]) = (partial, files.as_slice()) {
            let bytes = std::fs::read(file).unwrap();
            std::fs::remove_file(file).unwrap();
            return bytes;
        }
        assert!(Instant::now() < deadline, "no download in {}: {files:?}", dir.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Types `value` into the field with id `id`.
async fn fill(b: &Client, id: &str, value: &str) {
    b.find(Locator::Id(id)).await.unwrap().send_keys(value).await.unwrap();
}

/// The word that follows `after` in `text`, up to a space or a comma.
fn word_after(text: &str, after: &str) -> String {
    let start =
        text.find(after).unwrap_or_else(|| panic!("no {after:?} in {text:?}")) + after.len();
    text[start..].chars().take_while(|c| !matches!(c, ' ' | ',')).collect()
}

/// Clicks the download button of the first record listed.
async fn click_download(b: &Client) {
    b.wait().at_most(LIMIT).for_element(Locator::Css("button.download")).await.unwrap();
    b.find(Locator::Css("button.download")).await.unwrap().click().await.unwrap();
}

#[test]
fn a_hospital_a_patient_and_a_doctor_use_the_portal_in_a_real_browser() {
    let tmp = tempdir();
    let node = Node::start(&tmp.path().join("data"));
    // The regulator admits the hospital; the doctor and the patient create their own wallets
    // (their keys never leave their computers) and give the hospital their identities.
    let (hospital, hospital_account) = admitted_hospital(tmp.path(), &node);
    let doctor_wallet = wallet(tmp.path(), "doctor", &node.url);
    let patient_wallet = wallet(tmp.path(), "patient", &node.url);
    let hospital_portal = Portal::start(&hospital, &node.url, &[]);
    let driver = driver();
    let dirs: Vec<PathBuf> =
        ["p-profile", "p-downloads", "d-profile", "d-downloads", "h-profile", "h-downloads"]
            .iter()
            .map(|d| {
                let dir = tmp.path().join(d);
                std::fs::create_dir_all(&dir).unwrap();
                dir
            })
            .collect();
    let note = tmp.path().join("discharge-note.txt");
    let plain = b"Discharge note: knee arthroscopy, no complications. Follow-up in 6 weeks.\n";
    std::fs::write(&note, plain).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // Registration, at the hospital's staff desk.
        let desk = browser(&driver, &dirs[4], &dirs[5]).await;
        unlock(&desk, &hospital_portal).await;
        assert_eq!(text(&desk, "#role").await, "hospital");
        desk.goto(&format!("{}/staff", hospital_portal.origin())).await.unwrap();
        fill(&desk, "doctor-identity", &identity(&doctor_wallet)).await;
        fill(&desk, "registration-number", "GMC-1234567").await;
        fill(&desk, "doctor-name", "Dr. Ada Quill").await;
        fill(&desk, "specialisation", "cardiology").await;
        desk.find(Locator::Id("do-onboard")).await.unwrap().click().await.unwrap();
        let flash = flash_saying(&desk, "ok", "Dr. Ada Quill onboarded").await;
        let doctor_account = word_after(&flash, "account ");
        assert!(text(&desk, "#doctors").await.contains(&doctor_account));
        fill(&desk, "patient-identity", &identity(&patient_wallet)).await;
        fill(&desk, "patient-name", "Jane Roe").await;
        // (A date field's typing order follows the browser's locale; its value does not.)
        desk.execute("document.getElementById('date-of-birth').value = '1980-01-02';", vec![])
            .await
            .unwrap();
        fill(&desk, "phone", "+44 7700 900123").await;
        fill(&desk, "attendant-name", "John Roe").await;
        fill(&desk, "attendant-phone", "+44 7700 900456").await;
        fill(&desk, "attendant-relationship", "spouse").await;
        desk.find(Locator::Id("do-register")).await.unwrap().click().await.unwrap();
        let flash = flash_saying(&desk, "ok", "Jane Roe registered: Patient-ID ").await;
        let patient_id = word_after(&flash, "Patient-ID ");
        assert_eq!(patient_id.len(), 5, "{flash}");
        let patient_account = word_after(&flash, "account ");
        shot(&desk, "hospital-staff").await;
        // The two wallets now belong to ledger accounts, as the doctor and the patient see.
        let shown = ok(&["wallet", "show", "--wallet", &patient_wallet, "--ledger", "--json"], &[]);
        assert!(shown.contains(&format!("\"patient_id\": {patient_id}")), "{shown}");
        let c = Cast { patient_id, doctor_account };

        let patient_portal = Portal::start(&patient_wallet, &node.url, &[]);
        let doctor_portal = Portal::start(&doctor_wallet, &node.url, &[]);
        let patient = browser(&driver, &dirs[0], &dirs[1]).await;
        let doctor = browser(&driver, &dirs[2], &dirs[3]).await;

        // Both unlock their wallets in the browser.
        unlock(&patient, &patient_portal).await;
        assert_eq!(text(&patient, "#role").await, "patient");
        shot(&patient, "patient-home").await;
        unlock(&doctor, &doctor_portal).await;
        assert_eq!(text(&doctor, "#role").await, "doctor");

        // The patient grants the doctor access to all records.
        patient.goto(&format!("{}/consent", patient_portal.origin())).await.unwrap();
        patient
            .find(Locator::Id("grantee"))
            .await
            .unwrap()
            .send_keys(&c.doctor_account)
            .await
            .unwrap();
        patient.find(Locator::Id("do-grant")).await.unwrap().click().await.unwrap();
        flash_saying(&patient, "ok", "access granted").await;
        assert!(text(&patient, "#grants").await.contains("active"));
        shot(&patient, "patient-consent").await;

        // The doctor finds the patient among those who granted them access, and adds a
        // record for them: the file is encrypted in the doctor's portal process, with a
        // progress bar.
        doctor.goto(&format!("{}/records", doctor_portal.origin())).await.unwrap();
        let mine = text(&doctor, "#my-patients").await;
        assert!(mine.contains("active") && mine.contains("all records"), "{mine}");
        doctor
            .find(Locator::Css("#my-patients a.my-patient"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // The page before has the same upload form, without the patient: wait for the
        // patient's page (only it offers to request access) before filling it in.
        text(&doctor, "#request-access").await;
        doctor
            .find(Locator::Css("select[name=category] option[value=treatment_summary]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        doctor
            .find(Locator::Id("file"))
            .await
            .unwrap()
            .send_keys(&note.display().to_string())
            .await
            .unwrap();
        doctor.find(Locator::Id("add")).await.unwrap().click().await.unwrap();
        flash_saying(&doctor, "ok", "added").await;
        let listed = text(&doctor, "#records").await;
        assert!(listed.contains("treatment summary") && listed.contains(&c.patient_id), "{listed}");
        shot(&doctor, "doctor-records").await;

        // The patient sees it and downloads it: decrypted in the patient's portal.
        patient.goto(&format!("{}/records", patient_portal.origin())).await.unwrap();
        click_download(&patient).await;
        assert_eq!(downloaded(&dirs[1]), plain);
        shot(&patient, "patient-records").await;

        // Everything in one click: the decrypted record and the whole access log.
        patient.find(Locator::Id("export")).await.unwrap().click().await.unwrap();
        let archive = downloaded(&dirs[1]);
        let mut entries = std::collections::BTreeMap::new();
        for entry in tar::Archive::new(archive.as_slice()).entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            entries.insert(path, bytes);
        }
        let record = entries
            .iter()
            .find(|(path, _)| path.ends_with("-discharge-note.txt"))
            .unwrap_or_else(|| panic!("no record in {:?}", entries.keys()));
        assert_eq!(record.1, plain);
        let trail = entries.iter().find(|(path, _)| path.ends_with("/audit-trail.json")).unwrap();
        let trail: serde_json::Value = serde_json::from_slice(trail.1).unwrap();
        assert!(trail.as_array().unwrap().len() >= 4, "{trail}");
        assert!(entries.keys().any(|p| p.ends_with("/records.json")));

        // The patient watches the access log; the doctor reads the record; the read appears
        // as a notification without a reload.
        patient.goto(&format!("{}/access-log", patient_portal.origin())).await.unwrap();
        text(&patient, "#access-log").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        doctor
            .goto(&format!("{}/records?patient={}", doctor_portal.origin(), c.patient_id))
            .await
            .unwrap();
        click_download(&doctor).await;
        assert_eq!(downloaded(&dirs[3]), plain);
        let notice = text(&patient, "#notices li").await;
        assert!(notice.contains("read record") && notice.contains("ALLOWED"), "{notice}");
        shot(&patient, "patient-notification").await;

        // Reloaded, the access log shows the doctor's read, allowed by the grant.
        patient.refresh().await.unwrap();
        let allowed = text(&patient, "#access-log tr.allowed").await;
        assert!(allowed.contains(&c.doctor_account) && allowed.contains("ALLOWED"), "{allowed}");
        assert!(allowed.contains("doctor") && allowed.contains("St. Elsewhere"), "{allowed}");

        // The patient revokes the grant; the doctor's next read is denied, and logged.
        patient.goto(&format!("{}/consent", patient_portal.origin())).await.unwrap();
        patient.find(Locator::Css("button.revoke")).await.unwrap().click().await.unwrap();
        flash_saying(&patient, "ok", "revoked").await;
        // Listed apart from the grants in force, which are none now.
        let past = text(&patient, "#past-grants").await;
        assert!(past.contains("revoked"), "{past}");
        assert!(patient.find_all(Locator::Id("grants")).await.unwrap().is_empty());
        assert!(patient.find_all(Locator::Css("button.revoke")).await.unwrap().is_empty());
        doctor.refresh().await.unwrap();
        click_download(&doctor).await;
        flash_saying(&doctor, "error", "access denied").await;
        shot(&doctor, "doctor-denied").await;
        patient.goto(&format!("{}/access-log", patient_portal.origin())).await.unwrap();
        let denied = text(&patient, "#access-log tr.denied").await;
        assert!(denied.contains(&c.doctor_account) && denied.contains("DENIED"), "{denied}");
        shot(&patient, "patient-access-log").await;

        // Break-glass: the doctor declares it with a coded reason and a text; the page counts
        // down the window; the patient is alarmed at once, and the access log highlights it.
        doctor
            .find(Locator::Css("select[name=code] option[value=unconscious]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        doctor
            .find(Locator::Id("reason"))
            .await
            .unwrap()
            .send_keys("Found unconscious in the car park; no card on them.")
            .await
            .unwrap();
        doctor.find(Locator::Id("do-break-glass")).await.unwrap().click().await.unwrap();
        let declared = text(&doctor, "#break-glass").await;
        assert!(declared.contains("Break-glass") && declared.contains(" min "), "{declared}");
        shot(&doctor, "doctor-break-glass").await;
        // The declaration answered with a redirect: reloading the page declares nothing more.
        doctor.refresh().await.unwrap();
        text(&doctor, "#records").await;
        let alarm = text(&patient, "#notices li.alarm").await;
        assert!(alarm.contains("break") || alarm.contains("BREAK"), "{alarm}");
        patient.refresh().await.unwrap();
        let rows = patient.find_all(Locator::Css("#access-log tr.break-glass")).await.unwrap();
        assert_eq!(rows.len(), 1, "one break-glass, one row");
        let row = text(&patient, "#access-log tr.break-glass").await;
        assert!(row.contains(&c.doctor_account) && row.contains("unconscious"), "{row}");
        shot(&patient, "patient-break-glass").await;

        // The hospital's desk lists its doctor's break-glass for review, and files one.
        desk.refresh().await.unwrap();
        let review = text(&desk, "#reviews tr.break-glass").await;
        assert!(review.contains("Dr. Ada Quill") && review.contains(&patient_account), "{review}");
        assert!(review.contains("Found unconscious in the car park"), "{review}");
        shot(&desk, "hospital-review").await;
        desk.find(Locator::Css("#reviews input.finding"))
            .await
            .unwrap()
            .send_keys("Justified: unconscious, no card.")
            .await
            .unwrap();
        desk.find(Locator::Css("#reviews button.review")).await.unwrap().click().await.unwrap();
        flash_saying(&desk, "ok", "filed").await;
        assert!(desk.find_all(Locator::Id("reviews")).await.unwrap().is_empty());
        patient.goto(&format!("{}/access-log", patient_portal.origin())).await.unwrap();
        let log = text(&patient, "#access-log").await;
        assert!(log.contains(&hospital_account), "the review, by the hospital: {log}");

        patient.close().await.unwrap();
        doctor.close().await.unwrap();
        desk.close().await.unwrap();
    });
    // Nothing downloaded beyond what was asked.
    for d in [&dirs[1], &dirs[3], &dirs[5]] {
        let left: Vec<PathBuf> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

/// What the rest of the test knows of the accounts the hospital registered.
struct Cast {
    patient_id: String,
    doctor_account: String,
}

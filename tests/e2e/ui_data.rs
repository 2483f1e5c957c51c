//! The owner's Data screens over plain HTTP on a real `duo owner serve`: upload a CSV, declare its metadata,
//! confirm (what an FI sees changes only then), errors naming line and column, the upload's own body limit,
//! and delete behind a confirmation page and the CSRF token.

use super::cli::{json, ok};
use super::ui::{csrf, http, http_as, paired, sign_in, Resp, Ui};
use std::collections::BTreeMap;
use std::path::Path;

const BANK: &str = "date,amount,kind\n\
                    2025-01-03,12.50,groceries\n\
                    2025-01-17,-1450.00,rent\n\
                    2025-02-02,3.99,groceries\n";

/// A signed-in client of the UI.
struct Owner<'a> {
    ui: &'a Ui,
    cookie: String,
    origin: String,
}

impl<'a> Owner<'a> {
    fn new(ui: &'a Ui) -> Owner<'a> {
        Owner {
            cookie: sign_in(ui),
            origin: format!("http://{}", ui.host),
            ui,
        }
    }

    fn get(&self, path: &str) -> Resp {
        http(
            self.ui,
            "GET",
            path,
            &[("Host", &self.ui.host), ("Cookie", &self.cookie)],
            "",
        )
    }

    fn post(&self, path: &str, fields: &[(String, String)]) -> Resp {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        http(
            self.ui,
            "POST",
            path,
            &[
                ("Host", &self.ui.host),
                ("Cookie", &self.cookie),
                ("Origin", &self.origin),
            ],
            &body,
        )
    }

    /// The multipart upload the browser sends: the CSRF token, the name and the file.
    fn upload(&self, csrf: &str, name: &str, file: &str, bytes: &[u8]) -> Resp {
        let b = "----duo-test-boundary";
        let mut body = Vec::new();
        for (k, v) in [("csrf", csrf), ("name", name)] {
            body.extend_from_slice(
                format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                    .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file}\"\r\n\
                 Content-Type: text/csv\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
        http_as(
            &self.ui.host,
            "POST",
            "/data/upload",
            &[
                ("Host", &self.ui.host),
                ("Cookie", &self.cookie),
                ("Origin", &self.origin),
            ],
            &format!("multipart/form-data; boundary={b}"),
            &body,
        )
    }

    fn token(&self) -> String {
        csrf(&self.get("/data/upload").body)
    }
}

/// Percent-encoding for a form body.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// HTML text as the browser reads it (askama writes `&#34;` and the like).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail.find(';').unwrap_or(0);
        let entity = &tail[1..end.max(1)];
        let ch = match entity {
            "quot" => Some('"'),
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            e => e
                .strip_prefix('#')
                .and_then(|n| n.parse::<u32>().ok())
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) if end > 0 => {
                out.push(c);
                rest = &tail[end + 1..];
            }
            _ => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    let end = tag[at..].find('"')?;
    Some(unescape(&tag[at..at + end]))
}

/// What a browser would submit from the page's form at `action`: inputs (checked boxes only), each select's
/// selected option, textareas.
fn form_fields(page: &str, action: &str) -> BTreeMap<String, String> {
    let start = page
        .find(&format!("action=\"{action}\""))
        .unwrap_or_else(|| panic!("no form posting to {action}: {page}"));
    let form = &page[start..start + page[start..].find("</form>").unwrap()];
    let mut out = BTreeMap::new();
    for tag in form.split('<').skip(1) {
        let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
        if tag.starts_with("input ") {
            let checkbox = attr(tag, "type").as_deref() == Some("checkbox");
            if let Some(n) = attr(tag, "name") {
                if !checkbox || tag.contains(" checked") {
                    out.insert(n, attr(tag, "value").unwrap_or_default());
                }
            }
        }
    }
    for part in form.split("<select ").skip(1) {
        let tag = &part[..part.find('>').unwrap()];
        let options = &part[..part.find("</select>").unwrap()];
        let chosen = options
            .split("<option ")
            .skip(1)
            .find(|o| o[..o.find('>').unwrap()].contains(" selected"))
            .or_else(|| options.split("<option ").nth(1))
            .unwrap();
        out.insert(
            attr(tag, "name").unwrap(),
            attr(&format!(" {chosen}"), "value").unwrap(),
        );
    }
    for part in form.split("<textarea ").skip(1) {
        let gt = part.find('>').unwrap();
        let text = &part[gt + 1..part.find("</textarea>").unwrap()];
        out.insert(attr(&part[..gt], "name").unwrap(), unescape(text));
    }
    out
}

fn fields(m: &BTreeMap<String, String>) -> Vec<(String, String)> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The dataset names and descriptions the FI sees.
fn fi_sees(fi: &Path) -> BTreeMap<String, String> {
    json(&ok(fi, &["fi", "datasets", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let meta = if d.get("meta").is_some() {
                &d["meta"]
            } else {
                d
            };
            (
                meta["name"].as_str().unwrap().to_string(),
                meta["description"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn an_upload_is_previewed_and_declared_and_what_an_fi_sees_changes_only_on_confirm() {
    let dir = tempfile::tempdir().unwrap();
    let (home, fi, ui) = paired(dir.path());
    let o = Owner::new(&ui);
    let before = fi_sees(&fi);
    assert!(!before.contains_key("bank"));

    let page = o.upload(&o.token(), "", "bank.csv", BANK.as_bytes());
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("2025-01-17") && page.body.contains("-1450.00"),
        "the first rows"
    );
    let mut f = form_fields(&page.body, "/data/upload/check");
    assert_eq!(f["name"], "bank", "the name comes from the file");
    assert_eq!(f["col1_type"], "money", "amounts with cents are money");
    assert_eq!(f["col0_type"], "date");
    assert_eq!(f["col2_categories"], "groceries\nrent");
    assert_eq!(
        (f["col1_lo"].as_str(), f["col1_hi"].as_str()),
        ("-2000.00", "20.00"),
        "round bounds"
    );
    assert_eq!(f["time_column"], "date");
    assert_eq!(fi_sees(&fi), before, "an upload alone changes nothing");

    f.insert("description".into(), "My bank account".into());
    let check = o.post("/data/upload/check", &fields(&f));
    assert_eq!(check.status, 200, "{}", check.body);
    assert!(check.body.contains("A new dataset"), "{}", check.body);
    assert!(check.body.contains("My bank account"), "what FIs will see");
    assert_eq!(fi_sees(&fi), before, "checking changes nothing");

    let confirm = form_fields(&check.body, "/data/upload/confirm");
    let mut forged = confirm.clone();
    forged.insert("csrf".into(), "0".repeat(64));
    assert_eq!(o.post("/data/upload/confirm", &fields(&forged)).status, 403);
    assert_eq!(fi_sees(&fi), before, "a forged confirmation loads nothing");
    let done = o.post("/data/upload/confirm", &fields(&confirm));
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        done.body.contains("Loaded 3 rows into bank (version 1)"),
        "{}",
        done.body
    );
    let after = fi_sees(&fi);
    assert_eq!(after["bank"], "My bank account");
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(
        o.post("/data/upload/confirm", &fields(&confirm)).status,
        404,
        "a confirmation loads once"
    );
    let log = ok(&home, &["owner", "log", "--json"]);
    assert!(log.contains("dataset_loaded") && log.contains("\"bank\""));

    // Replacing asks first and says what changes.
    let more = format!("{BANK}2025-02-20,8.00,groceries\n");
    let page = o.upload(&o.token(), "bank", "bank-feb.csv", more.as_bytes());
    let mut f = form_fields(&page.body, "/data/upload/check");
    f.insert("description".into(), "My bank account".into());
    let check = o.post("/data/upload/check", &fields(&f));
    assert!(
        check.body.contains("This replaces version 1 of bank"),
        "{}",
        check.body
    );
    assert!(check.body.contains("4 rows instead of 3"), "{}", check.body);
    assert!(check.body.contains("Yes, replace bank"));
    let done = o.post(
        "/data/upload/confirm",
        &fields(&form_fields(&check.body, "/data/upload/confirm")),
    );
    assert!(
        done.body.contains("version 2, replacing version 1"),
        "{}",
        done.body
    );
    let store = o.get("/data");
    assert!(
        store.body.contains("replaced by a newer version"),
        "{}",
        store.body
    );
    assert!(store.body.contains("My bank account"));

    // What the owner was shown must still hold when they confirm.
    let page = o.upload(&o.token(), "bank", "bank.csv", BANK.as_bytes());
    let check = o.post(
        "/data/upload/check",
        &fields(&form_fields(&page.body, "/data/upload/check")),
    );
    assert!(check.body.contains("This replaces version 2 of bank"));
    ok(&home, &["owner", "dataset", "delete", "bank", "--yes"]);
    let late = o.post(
        "/data/upload/confirm",
        &fields(&form_fields(&check.body, "/data/upload/confirm")),
    );
    assert_eq!(late.status, 409, "{}", late.body);
    assert!(late.body.contains("changed since you checked"));
    assert!(!fi_sees(&fi).contains_key("bank"), "nothing was loaded");
}

#[test]
fn a_malformed_csv_names_the_line_and_column_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_home, fi, ui) = paired(dir.path());
    let o = Owner::new(&ui);
    let before = fi_sees(&fi);
    let bad = "date,amount\n2025-01-03,12.50\n2025-01-04,twelve\n";
    let page = o.upload(&o.token(), "bad", "bad.csv", bad.as_bytes());
    assert_eq!(page.status, 200);
    let mut f = form_fields(&page.body, "/data/upload/check");
    // The owner says the amounts are money; line 3 is not.
    assert_eq!(f["col1_type"], "category", "the node saw words in it");
    f.insert("col1_type".into(), "money".into());
    f.insert("col1_categories".into(), String::new());
    f.insert("col1_description".into(), "what I paid".into());
    let r = o.post("/data/upload/check", &fields(&f));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        unescape(&r.body).contains("line 3, column \"amount\": \"twelve\" is not a dollar amount"),
        "{}",
        r.body
    );
    assert!(r.body.contains("Nothing was loaded"));
    let kept = form_fields(&r.body, "/data/upload/check");
    assert_eq!(
        kept["col1_type"], "money",
        "what the owner declared is kept"
    );
    assert_eq!(kept["col1_description"], "what I paid");
    assert!(r.body.contains("twelve"), "the preview is still there");
    assert!(r.body.contains("form") && !r.body.contains("/data/upload/confirm"));
    assert_eq!(fi_sees(&fi), before);
    // Bounds that are not numbers name the field.
    f.insert("col1_type".into(), "f64".into());
    f.insert("col1_lo".into(), "low".into());
    let r = o.post("/data/upload/check", &fields(&f));
    assert_eq!(r.status, 400);
    assert!(r.body.contains("column amount, lowest value"), "{}", r.body);
    // A file with a header only loads only when the owner says so.
    let page = o.upload(&o.token(), "empty", "empty.csv", b"date,amount\n");
    let mut f = form_fields(&page.body, "/data/upload/check");
    let r = o.post("/data/upload/check", &fields(&f));
    assert_eq!(r.status, 400);
    assert!(
        unescape(&r.body).contains("has a header but no data rows"),
        "{}",
        r.body
    );
    f.insert("allow_empty".into(), "1".into());
    let r = o.post("/data/upload/check", &fields(&f));
    assert_eq!(r.status, 200, "{}", r.body);
    let done = o.post(
        "/data/upload/confirm",
        &fields(&form_fields(&r.body, "/data/upload/confirm")),
    );
    assert!(
        done.body.contains("Loaded 0 rows into empty"),
        "{}",
        done.body
    );
    // A forged check is refused before anything is read.
    f.insert("csrf".into(), "0".repeat(64));
    assert_eq!(o.post("/data/upload/check", &fields(&f)).status, 403);
}

#[test]
fn the_upload_alone_takes_large_bodies_up_to_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (_home, _fi, ui) = paired(dir.path());
    let o = Owner::new(&ui);
    let token = o.token();
    // 1 MiB is fine for the upload (over the 16 KiB every other form keeps).
    let mut big = String::from("n\n");
    while big.len() < 1 << 20 {
        big.push_str("123456\n");
    }
    let r = o.upload(&token, "big", "big.csv", big.as_bytes());
    assert_eq!(r.status, 200, "{}", &r.body[..r.body.len().min(500)]);
    // Over 32 MiB is refused with a page saying so.
    let huge = vec![b'1'; 33 << 20];
    let r = o.upload(&token, "huge", "huge.csv", &huge);
    assert_eq!(r.status, 413);
    assert!(r.body.contains("32 MiB"), "{}", r.body);
    // The metadata form keeps the small limit.
    let mut f = form_fields(
        &o.upload(&token, "x", "x.csv", BANK.as_bytes()).body,
        "/data/upload/check",
    );
    f.insert("description".into(), "a".repeat(100_000));
    assert_eq!(o.post("/data/upload/check", &fields(&f)).status, 413);
    // A forged upload is refused.
    let r = o.upload(&"0".repeat(64), "bank", "bank.csv", BANK.as_bytes());
    assert_eq!(r.status, 403);
}

#[test]
fn deleting_a_dataset_asks_first_and_needs_the_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let (home, fi, ui) = paired(dir.path());
    let o = Owner::new(&ui);
    assert!(fi_sees(&fi).contains_key("rent"));
    let store = o.get("/data");
    assert!(
        store.body.contains("href=\"/data/delete?name=rent\""),
        "{}",
        store.body
    );
    let ask = o.get("/data/delete?name=rent");
    assert_eq!(ask.status, 200);
    assert!(ask.body.contains("Yes, delete rent"));
    let mut f = form_fields(&ask.body, "/data/delete");
    let good = f.clone();
    f.insert("csrf".into(), "0".repeat(64));
    assert_eq!(o.post("/data/delete", &fields(&f)).status, 403);
    let cross = http(
        &ui,
        "POST",
        "/data/delete",
        &[
            ("Host", &ui.host),
            ("Cookie", &o.cookie),
            ("Origin", "http://evil.example"),
        ],
        &format!("csrf={}&name=rent", good["csrf"]),
    );
    assert_eq!(cross.status, 403);
    assert!(
        fi_sees(&fi).contains_key("rent"),
        "nothing refused deleted it"
    );
    let done = o.post("/data/delete", &fields(&good));
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done
        .body
        .contains("Deleted the rows of 1 version(s) of rent"));
    assert!(!fi_sees(&fi).contains_key("rent"));
    assert!(ok(&home, &["owner", "log", "--json"]).contains("dataset_deleted"));
    assert!(o.get("/data").body.contains("Deleted datasets"));
    assert_eq!(o.get("/data/delete?name=rent").status, 404);
}

/// The command line drafts the metadata the UI's form is pre-filled with (one inference, `duo_engine::draft`),
/// and the draft loads as it is.
#[test]
fn the_cli_drafts_the_metadata_the_ui_pre_fills() {
    let dir = tempfile::tempdir().unwrap();
    let (home, fi, ui) = paired(dir.path());
    let csv = dir.path().join("bank.csv");
    std::fs::write(&csv, BANK).unwrap();
    let csv = csv.to_str().unwrap();
    let out = ok(&home, &["owner", "load", csv, "--name", "bank", "--draft"]);
    assert!(out.contains("bank.meta.toml"), "{out}");
    let toml = std::fs::read_to_string(dir.path().join("bank.meta.toml")).unwrap();
    assert!(
        toml.contains("type = \"money\"") && toml.contains("bounds = [-200000.0, 2000.0]"),
        "{toml}"
    );
    assert!(
        toml.contains("categories = [\"groceries\", \"rent\"]"),
        "{toml}"
    );
    assert!(!fi_sees(&fi).contains_key("bank"), "a draft loads nothing");
    let again = super::cli::duo(&home, &["owner", "load", csv, "--name", "bank", "--draft"]);
    assert!(!again.status.success(), "an existing metadata file is kept");

    let o = Owner::new(&ui);
    let f = form_fields(
        &o.upload(&o.token(), "bank", "bank.csv", BANK.as_bytes())
            .body,
        "/data/upload/check",
    );
    assert_eq!(f["col1_type"], "money");
    assert_eq!(
        (f["col1_lo"].as_str(), f["col1_hi"].as_str()),
        ("-2000.00", "20.00"),
        "the same bounds, in dollars"
    );
    assert_eq!(f["col2_categories"], "groceries\nrent");

    ok(&home, &["owner", "load", csv, "--name", "bank"]);
    assert!(fi_sees(&fi).contains_key("bank"));
}

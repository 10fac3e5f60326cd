//! Guessing guest link ids gets nothing: every id that is not a live link,
//! well-formed or not, answers the same 404 with the same body on the upload
//! API and the guest page, stores nothing, and leaves the real link working.
//! (The lookup is one indexed query either way; ids are 16 characters of a
//! 57-letter alphabet, about 93 bits, so guessing is hopeless, not just slow.)

mod common;

use common::{DataDir, TestServer, pattern_part};
use rand::Rng;
use reqwest::Method;
use share_server::entry::ID_ALPHABET;
use share_server::guest_links::GUEST_LINK_ID_LEN;

fn random_id(rng: &mut impl Rng) -> String {
    (0..GUEST_LINK_ID_LEN)
        .map(|_| char::from(ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())]))
        .collect()
}

async fn try_upload(server: &TestServer, id: &str) -> (u16, String) {
    let form = reqwest::multipart::Form::new().part("file", pattern_part(1, 1000, "g.bin", None));
    let res = server
        .http
        .post(server.url(&format!("/api/guest/{id}")))
        .multipart(form)
        .send()
        .await
        .expect("request");
    (res.status().as_u16(), res.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessed_guest_link_ids_all_get_the_same_404() {
    let dir = DataDir::new();
    let mut server = TestServer::start(&dir, &[]);
    server.login().await;
    let res = server
        .req(Method::POST, "/api/guest-links")
        .json(&serde_json::json!({"label": "real", "maxFileUploads": 1000}))
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 200);
    let real: serde_json::Value = res.json().await.expect("json");
    let real = real["id"].as_str().expect("id").to_owned();

    let mut rng = rand::rng();
    let mut guesses: Vec<String> = (0..200).map(|_| random_id(&mut rng)).collect();
    // Near misses of the real id: one character changed, one dropped, one added.
    let swap = if real.starts_with('a') { "b" } else { "a" };
    guesses.push(format!("{swap}{}", &real[1..]));
    guesses.push(real[1..].to_owned());
    guesses.push(format!("{real}a"));
    guesses.push(
        real.to_uppercase()
            .replace(|c: char| c.is_ascii_digit(), "Z"),
    );
    // Malformed: wrong characters, traversal, encoded bytes, very long.
    for bad in [
        "x",
        "....",
        "..%2F..%2Fetc",
        "%00%00",
        "a%20b",
        "-",
        "!!!!!!!!!!!!!!!!",
    ] {
        guesses.push(bad.to_owned());
    }
    guesses.push("a".repeat(4000));

    let mut answers = std::collections::BTreeSet::new();
    for id in &guesses {
        if id == &real {
            continue;
        }
        let (status, body) = try_upload(&server, id).await;
        assert_eq!(status, 404, "guess {id:?} answered {status}: {body}");
        answers.insert(body);
        let page = server
            .http
            .get(server.url(&format!("/g/{id}")))
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), 404, "guest page for {id:?}");
    }
    assert_eq!(
        answers.len(),
        1,
        "every wrong id must get the same answer, got {answers:?}"
    );
    assert_eq!(
        dir.count("SELECT COUNT(*) FROM entries"),
        0,
        "no guess stored anything"
    );
    assert_eq!(dir.count("SELECT COUNT(*) FROM entries_data"), 0);

    let (status, body) = try_upload(&server, &real).await;
    assert_eq!(status, 200, "the real link still works: {body}");
}

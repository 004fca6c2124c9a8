//! A browser as far as the console's HTTP is concerned: keeps the session
//! cookie (by hand: the cookie is `Secure` and the test server speaks
//! plain HTTP on loopback, which browsers accept and cookie jars may not),
//! reads CSRF tokens out of pages and posts forms. For the console's
//! server-side rules; the real-browser tests drive Chromium.

#![allow(dead_code)]

use crate::common::{groups_of, TestApp};

pub struct Browser<'a> {
    pub app: &'a TestApp,
    http: reqwest::Client,
    pub cookies: Vec<(String, String)>,
}

pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        field_value(&self.body, "csrf").expect("page has a csrf field")
    }

    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The `value` of the first input named `name`.
pub fn field_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Browser<'a> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            app,
            http,
            cookies: Vec::new(),
        }
    }

    fn remember(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !v.contains("Max-Age=0") {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, resp: reqwest::Response) -> Page {
        self.remember(&resp);
        Page {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let resp = self
            .http
            .get(format!("{}{path}", self.app.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.finish(resp).await
    }

    /// Posts a form as given (no token added).
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.post_from(path, fields, None).await
    }

    /// Posts a form as given, saying it comes from `origin`.
    pub async fn post_from(&mut self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> Page {
        let mut req = self
            .http
            .post(format!("{}{path}", self.app.base))
            .header("cookie", self.cookie_header())
            .form(fields);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let resp = req.send().await.unwrap();
        self.finish(resp).await
    }

    /// Posts a form with the CSRF token of the page at `from`.
    pub async fn post(&mut self, from: &str, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.get(from).await.csrf();
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// Signs in through the development page as a test user with their groups.
    pub async fn sign_in(&mut self, user: &str) -> Page {
        self.sign_in_as(user, groups_of(user)).await
    }

    /// Signs in through the development page with the given groups.
    pub async fn sign_in_as(&mut self, user: &str, groups: &[&str]) -> Page {
        let page = self.get("/signin").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let token = page.csrf();
        let email = format!("{user}@example.com");
        let mut fields = vec![("csrf", token.as_str()), ("user", user), ("email", email.as_str())];
        for g in groups {
            fields.push(("group", g));
        }
        let page = self.post_raw("/signin/dev", &fields).await;
        assert_eq!(page.status, 303, "{}", page.body);
        page
    }
}

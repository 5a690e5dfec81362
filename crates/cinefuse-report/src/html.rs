//! A minimal self-contained HTML page: sections of text, tables and images next to the page.

pub struct Page {
    title: String,
    body: String,
    toc: Vec<(String, String)>,
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Page {
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_string(),
            body: String::new(),
            toc: Vec::new(),
        }
    }

    pub fn section(&mut self, id: &str, heading: &str, intro: &str) {
        self.toc.push((id.to_string(), heading.to_string()));
        self.body.push_str(&format!(
            "<section id=\"{id}\"><h2>{}</h2>\n",
            escape(heading)
        ));
        if !intro.is_empty() {
            self.body.push_str(&format!("<p>{}</p>\n", escape(intro)));
        }
    }

    pub fn end_section(&mut self) {
        self.body.push_str("</section>\n");
    }

    pub fn image(&mut self, file: &str, alt: &str) {
        self.body.push_str(&format!(
            "<figure><img src=\"{}\" alt=\"{}\"><figcaption>{}</figcaption></figure>\n",
            escape(file),
            escape(alt),
            escape(alt)
        ));
    }

    pub fn paragraph(&mut self, text: &str) {
        self.body.push_str(&format!("<p>{}</p>\n", escape(text)));
    }

    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        self.body.push_str("<table><thead><tr>");
        for h in header {
            self.body.push_str(&format!("<th>{}</th>", escape(h)));
        }
        self.body.push_str("</tr></thead><tbody>\n");
        for r in rows {
            self.body.push_str("<tr>");
            for c in r {
                self.body.push_str(&format!("<td>{}</td>", escape(c)));
            }
            self.body.push_str("</tr>\n");
        }
        self.body.push_str("</tbody></table>\n");
    }

    pub fn render(&self) -> String {
        let toc: String = self
            .toc
            .iter()
            .map(|(id, h)| format!("<li><a href=\"#{id}\">{}</a></li>", escape(h)))
            .collect();
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}}\
h1{{border-bottom:2px solid #ddd}}h2{{margin-top:2em;border-bottom:1px solid #eee}}\
img{{max-width:100%;border:1px solid #eee}}figure{{margin:1em 0}}figcaption{{color:#666;font-size:.9em}}\
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ddd;padding:.3em .6em;text-align:right}}\
th{{background:#f5f5f5}}td:first-child,th:first-child{{text-align:left}}nav li{{display:inline;margin-right:1em}}\
</style></head><body>\n<h1>{t}</h1>\n<nav><ul>{toc}</ul></nav>\n{b}</body></html>\n",
            t = escape(&self.title),
            b = self.body
        )
    }
}

//! A small robots.txt reader: the rules of the group that applies to our user agent (or `*`),
//! longest match wins, `Allow` beats `Disallow` on ties.

#[derive(Debug, Clone, Default)]
pub struct Robots {
    rules: Vec<(bool, String)>,
    pub crawl_delay: Option<f64>,
}

impl Robots {
    pub fn parse(text: &str, user_agent: &str) -> Self {
        let agent = user_agent.to_lowercase();
        // (user agents, rules, crawl delay) per group.
        type Group = (Vec<String>, Vec<(bool, String)>, Option<f64>);
        let mut groups: Vec<Group> = Vec::new();
        let mut last_was_agent = false;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim().to_lowercase(), value.trim().to_string());
            match key.as_str() {
                "user-agent" => {
                    if !last_was_agent || groups.is_empty() {
                        groups.push((Vec::new(), Vec::new(), None));
                    }
                    groups.last_mut().unwrap().0.push(value.to_lowercase());
                    last_was_agent = true;
                }
                "allow" | "disallow" if !groups.is_empty() => {
                    if !value.is_empty() {
                        groups.last_mut().unwrap().1.push((key == "allow", value));
                    }
                    last_was_agent = false;
                }
                "crawl-delay" if !groups.is_empty() => {
                    groups.last_mut().unwrap().2 = value.parse().ok();
                    last_was_agent = false;
                }
                _ => last_was_agent = false,
            }
        }
        let specific = groups.iter().find(|(agents, _, _)| {
            agents
                .iter()
                .any(|a| a != "*" && agent.contains(a.as_str()))
        });
        let chosen = specific.or_else(|| {
            groups
                .iter()
                .find(|(agents, _, _)| agents.iter().any(|a| a == "*"))
        });
        match chosen {
            Some((_, rules, delay)) => Robots {
                rules: rules.clone(),
                crawl_delay: *delay,
            },
            None => Robots::default(),
        }
    }

    fn matches(pattern: &str, path: &str) -> bool {
        // `*` wildcards and a `$` end anchor, as most crawlers support.
        let anchored = pattern.ends_with('$');
        let pattern = pattern.trim_end_matches('$');
        let parts: Vec<&str> = pattern.split('*').collect();
        let mut pos = 0;
        for (i, part) in parts.iter().enumerate() {
            if i == 0 {
                if !path.starts_with(part) {
                    return false;
                }
                pos = part.len();
            } else if let Some(found) = path[pos..].find(part) {
                pos += found + part.len();
            } else {
                return false;
            }
        }
        !anchored || pos == path.len()
    }

    pub fn allowed(&self, path: &str) -> bool {
        let mut best: Option<(usize, bool)> = None;
        for (allow, pattern) in &self.rules {
            if Self::matches(pattern, path) {
                let len = pattern.len();
                if best.is_none_or(|(l, a)| len > l || (len == l && *allow && !a)) {
                    best = Some((len, *allow));
                }
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_match_and_agent_groups() {
        let txt = "User-agent: *\nDisallow: /private/\nAllow: /private/ok\nDisallow: /*.json$\n\nUser-agent: cinefuse\nDisallow: /nocinefuse/\nCrawl-delay: 2\n";
        let star = Robots::parse(txt, "OtherBot/1.0");
        assert!(!star.allowed("/private/x"));
        assert!(star.allowed("/private/ok/1"));
        assert!(!star.allowed("/data/a.json"));
        assert!(star.allowed("/data/a.json?x"));
        assert!(star.allowed("/title/tt1/"));
        let ours = Robots::parse(txt, "cinefuse/0.1 (+research)");
        assert!(!ours.allowed("/nocinefuse/a"));
        assert!(ours.allowed("/private/x"), "the specific group replaces *");
        assert_eq!(ours.crawl_delay, Some(2.0));
    }
}

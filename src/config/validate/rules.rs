//! A rule's tiers, schedule and the responses it counts.

use super::*;

impl Validator<'_> {
    pub(super) fn tiers(&mut self, path: &Path, spec: &TiersSpec, algorithm: Option<Algorithm>) {
        let sources = [
            spec.from_key.is_some(),
            spec.from_header.is_some(),
            spec.from_extension.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        match sources {
            0 => self.error(
                path,
                "no source for the tier: nothing says which tier a request is in",
                "add from_key (a JWT claim), from_header or from_extension",
            ),
            1 => {}
            _ => self.error(
                path,
                "more than one source for the tier",
                "keep one of from_key, from_header and from_extension",
            ),
        }
        if let Some(key) = &spec.from_key {
            self.key(&path.key("from_key"), key);
            if matches!(key.kind.as_deref(), Some("header" | "query")) {
                self.error(
                    &path.key("from_key").key("kind"),
                    "header and query keys are hashed (they are credentials), so they cannot name a tier",
                    "use from_header to read a plain header set by your gateway",
                );
            }
        }
        if let Some(name) = &spec.from_header {
            self.header_name(&path.key("from_header"), name);
        }
        if spec.quotas.is_empty() {
            self.warn(
                &path.key("quotas"),
                "no tier is listed: every request gets the rule's own quota",
                "list tiers: quotas = { free = \"60/m\", pro = \"1000/m\", internal = \"unlimited\" }",
            );
        }
        for (tier, text) in &spec.quotas {
            if text == "unlimited" {
                continue;
            }
            let at = path.key("quotas").key(tier);
            match values::quota(text) {
                Ok(q) => {
                    if let Some(a) = algorithm {
                        self.quota_fits(&at, text, &q, a);
                    }
                }
                Err(mut bad) => {
                    bad.fix = format!("{}; or \"unlimited\"", bad.fix);
                    self.bad(&at, bad);
                }
            }
        }
    }

    pub(super) fn schedule(
        &mut self,
        path: &Path,
        spec: &ScheduleSpec,
        algorithm: Option<Algorithm>,
    ) {
        if !cfg!(feature = "schedule") {
            self.missing_feature(path, "a schedule", "schedule");
        }
        #[cfg(feature = "schedule")]
        if let Some(zone) = &spec.time_zone {
            if crate::policy::Schedule::new(zone, Quota::per_second(1)).is_err() {
                self.error(
                    &path.key("time_zone"),
                    format!("unknown time zone {zone:?}"),
                    "use an IANA name such as \"Europe/Paris\", \"America/New_York\" or \"UTC\"",
                );
            }
        }
        if spec.windows.is_empty() {
            self.warn(
                &path.key("windows"),
                "no window: the rule's quota applies at all times",
                "add [[…schedule.windows]] with days, start, end and quota, or remove the schedule",
            );
        }
        #[cfg(feature = "schedule")]
        if spec.windows.len() > crate::policy::MAX_SCHEDULE_WINDOWS {
            self.error(
                &path.key("windows"),
                format!(
                    "{} windows, more than the {} a schedule holds",
                    spec.windows.len(),
                    crate::policy::MAX_SCHEDULE_WINDOWS
                ),
                "merge windows that share a quota",
            );
        }
        for (i, w) in spec.windows.iter().enumerate() {
            let at = path.key("windows").index(i);
            if let Some(days) = &w.days {
                self.days(&at.key("days"), days);
            }
            let mut times = Vec::new();
            for (field, value) in [("start", &w.start), ("end", &w.end)] {
                match value {
                    None => self.error(
                        &at.key(field),
                        format!("missing: a window needs a {field} time"),
                        format!("add {field} = \"HH:MM\""),
                    ),
                    Some(t) => match values::clock_time(t) {
                        Ok(()) => times.push(t.clone()),
                        Err(bad) => self.bad(&at.key(field), bad),
                    },
                }
            }
            if let [start, end] = times.as_slice() {
                if start == "24:00" {
                    self.error(
                        &at.key("start"),
                        "a window cannot start at 24:00",
                        "start at 00:00 instead",
                    );
                } else if start == end {
                    self.error(
                        &at.key("end"),
                        format!("the window starts and ends at {start}: it is empty"),
                        "give an end different from the start (24:00 for the end of the day)",
                    );
                }
            }
            match &w.quota {
                None => self.error(
                    &at.key("quota"),
                    "missing: a window needs a quota",
                    "add quota = \"20/m\"",
                ),
                Some(text) => match values::quota(text) {
                    Ok(q) => {
                        if let Some(a) = algorithm {
                            self.quota_fits(&at.key("quota"), text, &q, a);
                        }
                    }
                    Err(bad) => self.bad(&at.key("quota"), bad),
                },
            }
        }
    }

    pub(super) fn days(&mut self, path: &Path, days: &DaysSpec) {
        const WORDS: &[&str] = &["daily", "weekdays", "weekends"];
        const DAYS: &[&str] = &[
            "mon",
            "tue",
            "wed",
            "thu",
            "fri",
            "sat",
            "sun",
            "monday",
            "tuesday",
            "wednesday",
            "thursday",
            "friday",
            "saturday",
            "sunday",
        ];
        match days {
            DaysSpec::Word(word) => {
                let w = word.to_ascii_lowercase();
                if !WORDS.contains(&w.as_str()) && !DAYS.contains(&w.as_str()) {
                    self.error(
                        path,
                        format!("unknown days {word:?}"),
                        format!(
                            "use daily, weekdays, weekends or a list of days; {}",
                            suggest(word, WORDS)
                        ),
                    );
                }
            }
            DaysSpec::List(list) => {
                if list.is_empty() {
                    self.error(
                        path,
                        "no day listed: the window never applies",
                        "list days such as [\"sat\", \"sun\"]",
                    );
                }
                for (i, day) in list.iter().enumerate() {
                    if !DAYS.contains(&day.to_ascii_lowercase().as_str()) {
                        self.error(
                            &path.index(i),
                            format!("unknown day {day:?}"),
                            suggest(day, DAYS),
                        );
                    }
                }
            }
        }
    }

    pub(super) fn count_only(&mut self, path: &Path, spec: &CountOnlySpec) {
        if spec.status.is_empty() {
            self.error(
                &path.key("status"),
                "no status listed: every request would be refunded, so the rule never limits",
                "list the statuses that count: status = [401] or [\"5xx\"]",
            );
        }
        for (i, status) in spec.status.iter().enumerate() {
            let ok = match status {
                StatusSpec::Code(code) => (100..=599).contains(code),
                StatusSpec::Text(text) => {
                    let b = text.as_bytes();
                    (b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && &b[1..] == b"xx")
                        || text.parse::<u64>().is_ok_and(|c| (100..=599).contains(&c))
                }
            };
            if !ok {
                let shown = match status {
                    StatusSpec::Code(c) => c.to_string(),
                    StatusSpec::Text(t) => format!("{t:?}"),
                };
                self.error(
                    &path.key("status").index(i),
                    format!("{shown} is not an HTTP status or class"),
                    "use a status from 100 to 599 (401) or a class (\"4xx\", \"5xx\")",
                );
            }
        }
    }
}

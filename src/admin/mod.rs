//! Status JSON, `/metrics` and the dashboard (arrives with the health/ops issue).

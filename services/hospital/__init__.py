"""The hospital's outpatient service (the paper's section 4.4, the phone as a "mobile
self-service kiosk"): departments, doctors and their sessions, appointment slots,
bookings by card, check-in after a verified scan, the calling board (the same calling
rule the twin uses, ``services.rules.calling``) and examination reports by card."""

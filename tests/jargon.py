"""Office handbooks written in a company's own codes: documents where the base embedder is weak on
the company's words, for the tests of what learns them (test_retriever_finetune, test_rerank)."""

from __future__ import annotations

import random
from pathlib import Path

# A company's own words: each invented code names a plain thing the base model cannot know. A handbook
# section names its topic once by the code (RULES) and otherwise only in plain words (TOPICS), so a
# question that is the code's sentence finds its section only through what the code means, which the
# sections of the training documents teach.
TOPICS = {
    "Vellix": ["hotel receipts and train tickets from a business trip are paid back",
               "taxi fares and meals during travel for work are refunded",
               "the cost of a flight booked for a customer visit is reimbursed"],
    "Brannock": ["a broken laptop is swapped for a new computer",
                 "a cracked notebook screen or a dead keyboard gets the machine replaced",
                 "an old computer that no longer boots is exchanged for a new one"],
    "Quessel": ["a parking space in the garage under the building is reserved",
                "employees who drive a car to work get a spot in the car park",
                "a permit lets your car stay in the staff garage"],
    "Durmot": ["days off for a summer holiday are requested",
               "annual leave for a family vacation is booked",
               "time away from work on holiday is approved"],
    "Tolvane": ["a lost entry badge for the front door is replaced",
                "the access card that opens the office doors is reissued",
                "a new door pass is printed when the old card stops working"],
    "Skirra": ["empty ink cartridges of the office printer are refilled",
               "paper and toner for the copier are ordered",
               "a jammed printer is repaired by the technician"],
    "Morrow-7": ["a doctor's note for a sick day is sent in",
                 "illness that keeps you at home is reported",
                 "sick leave after a visit to the physician is recorded"],
    "Fenwick": ["a new employee gets a desk, a chair and a welcome pack on the first day",
                "the first week of a new hire is planned with a mentor",
                "a newcomer is shown around the building and meets the team"],
    "Zelkor": ["a meeting room with a projector is booked for a presentation",
               "a conference room is reserved for a workshop with clients",
               "a large room with a screen is held for the quarterly review"],
    "Haldane": ["overtime hours worked on weekends are paid",
                "extra hours beyond the normal working week are compensated",
                "work on a Saturday or a Sunday earns additional pay"],
    "Primula": ["a mobile phone for work calls is handed out",
                "a company smartphone with a data plan is issued",
                "a cell phone for staff on call is provided"],
    "Oskarine": ["a training course or a conference ticket is funded",
                 "the fee of a professional certification exam is covered",
                 "books and online classes for learning new skills are paid for"],
    "Wendle": ["a chair that hurts your back is replaced by an ergonomic one",
               "a standing desk is set up for staff with back pain",
               "a footrest and a better monitor stand are delivered for posture"],
    "Carrow": ["a bicycle bought to ride to work is subsidised",
               "cycling to the office is encouraged with money towards a bike",
               "part of the price of a commuter bike is refunded"],
    "Thessaly-4": ["a gift from a supplier worth more than a small amount is declared",
                   "presents and invitations from vendors are reported",
                   "a dinner offered by a contractor is written down in the register"],
    "Ruddock": ["working from home on some days of the week is arranged",
                "remote work from your house is agreed with your manager",
                "a home office setup lets you do your job away from the building"],
}
RULES = ["Every {j} needs a signature from your manager within {n} days.",
         "Send the {j} to the desk on floor {n} before noon.",
         "A late {j} is returned to the sender after {n} weeks.",
         "Only one {j} per person is accepted in any period of {n} months.",
         "The {j} goes through the portal and takes about {n} working days."]


def write_jargon_docs(folder: Path, n_docs: int = 24, sections: int = 8, seed: int = 0) -> list[Path]:
    """`n_docs` office handbooks in Markdown, `sections` sections each; a section is one topic: one
    sentence names it only by its code (RULES), the others only in plain words (TOPICS)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    codes = list(TOPICS)
    out = []
    for d in range(n_docs):
        parts = [f"# Office handbook {d + 1}\n"]
        for k, code in enumerate(rng.sample(codes, sections)):
            plain = rng.sample(TOPICS[code], 2)
            rule = rng.choice(RULES).format(j=code, n=rng.randint(2, 99))
            body = [rule, f"Here {plain[0]}.", f"In short, {plain[1]}."]
            parts.append(f"## Part {k + 1}\n\n" + " ".join(body) + "\n")
        path = folder / f"handbook-{d + 1:02d}.md"
        path.write_text("\n".join(parts))
        out.append(path)
    return out

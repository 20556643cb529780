"""Writes the bundled sample datasets: invented rows in the five real layouts.

Every row is made up. Each file has the same row count and the same edge cases at the
same row numbers as the stand-ins described in `/work/shared/datasets/README.md`, so one
set of tests covers both. Run: `python -m jax_sft.samples.make_sample_datasets`.
"""

from __future__ import annotations

import csv
import json
import os

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "datasets")

# (question, reasoning sentences, answer). General, non-math, non-code topics.
TOPICS = [
    ("Why do leaves change color in autumn?",
     ["Leaves are green because chlorophyll dominates the other pigments.",
      "As days shorten, trees stop making chlorophyll and break it down to save nitrogen.",
      "The yellow and orange carotenoids were there all along and become visible.",
      "Reds come from anthocyanins that some trees make fresh in autumn."],
     "Trees stop making green chlorophyll as days shorten, revealing yellow and orange pigments, while some species produce new red pigments."),
    ("How does a bicycle stay upright while moving?",
     ["A stationary bicycle falls over easily, so motion must matter.",
      "The front fork is angled so the wheel steers into a lean automatically.",
      "The rider also makes small steering corrections without noticing.",
      "Gyroscopic effects help a little but are not the main reason."],
     "Mostly through steering: the geometry of the fork and the rider's small corrections turn the wheel into any lean, keeping the bike balanced."),
    ("What makes a good apology?",
     ["An apology has to name what went wrong, or it sounds empty.",
      "It should take responsibility without excuses attached.",
      "Acknowledging the effect on the other person shows understanding.",
      "An offer to repair the damage turns words into action."],
     "Name the mistake, own it without excuses, acknowledge how it affected the other person, and offer to make it right."),
    ("Why do onions make people cry?",
     ["Cutting an onion breaks its cells and mixes enzymes with sulfur compounds.",
      "That reaction releases a volatile gas called syn-propanethial S-oxide.",
      "The gas reaches the eyes and irritates the nerves of the cornea.",
      "The eyes respond by producing tears to wash the irritant away."],
     "Cutting onions releases a sulfur gas that irritates the eyes, and tears are the body's way of flushing it out."),
    ("How did the printing press change Europe?",
     ["Before Gutenberg, books were copied by hand and were rare and expensive.",
      "Movable type made books cheaper and far more numerous within decades.",
      "Ideas spread faster, which helped the Reformation and the scientific revolution.",
      "Literacy grew as printed material reached ordinary people."],
     "It made books cheap and plentiful, spreading ideas faster, fueling the Reformation and science, and raising literacy."),
    ("Why is sleep important for memory?",
     ["During the day the brain stores new experiences in a fragile form.",
      "In deep sleep the hippocampus replays those experiences.",
      "That replay helps move memories into long-term storage in the cortex.",
      "People deprived of sleep remember less of what they learned."],
     "Sleep, especially deep sleep, lets the brain replay and consolidate the day's experiences into lasting memories."),
    ("What causes the seasons on Earth?",
     ["A common idea is that Earth is closer to the Sun in summer, but that is not it.",
      "Earth's axis is tilted about 23.5 degrees relative to its orbit.",
      "When a hemisphere tilts toward the Sun, sunlight hits it more directly and days are longer.",
      "Six months later the same hemisphere tilts away and gets winter."],
     "The tilt of Earth's axis: each hemisphere gets more direct sunlight and longer days when it leans toward the Sun."),
    ("How do vaccines train the immune system?",
     ["The immune system learns to recognize specific shapes on germs.",
      "A vaccine presents a harmless version or piece of a germ.",
      "The body makes antibodies and memory cells against it.",
      "If the real germ arrives later, the response is fast and strong."],
     "They show the body a harmless version of a germ so it builds memory cells and can respond quickly to the real infection."),
    ("Why do cats purr?",
     ["Cats purr when content, but also when stressed or injured.",
      "So purring is not only a sign of happiness.",
      "It may be a way to soothe themselves or signal to others.",
      "Some researchers think the vibrations help heal bone and tissue."],
     "Purring signals contentment but also helps cats soothe themselves when stressed, and its vibrations may aid healing."),
    ("What is the difference between weather and climate?",
     ["Weather is what happens in the atmosphere over hours or days.",
      "Climate is the pattern of weather averaged over decades.",
      "A cold week does not disprove a warming climate.",
      "Put simply, climate is what you expect and weather is what you get."],
     "Weather is short-term atmospheric conditions; climate is the long-term average pattern of weather in a place."),
    ("How do bees communicate where flowers are?",
     ["Honeybees returning from good flowers perform a waggle dance.",
      "The angle of the dance relative to vertical shows the direction relative to the Sun.",
      "The length of the waggle run signals distance.",
      "Scent on the dancer tells others what kind of flower to look for."],
     "Through the waggle dance: its angle gives direction relative to the Sun, its duration gives distance, and scent identifies the flower."),
    ("Why did the Roman Empire split into east and west?",
     ["The empire had become too large to govern from one city.",
      "Diocletian divided administration among several rulers.",
      "The east was richer and more urban, the west more exposed to invasions.",
      "After Theodosius died in 395, the division became permanent."],
     "Its size made central rule impractical, so administration was divided, and after 395 the richer east and embattled west went separate ways."),
    ("How can someone become a better listener?",
     ["Good listening starts with attention, not with planning a reply.",
      "Asking open questions invites the speaker to say more.",
      "Summarizing what you heard shows understanding and catches mistakes.",
      "Resisting the urge to fix things lets people feel heard."],
     "Give full attention, ask open questions, reflect back what you heard, and hold off on advice until it is wanted."),
    ("What makes bread rise?",
     ["Yeast feeds on sugars in the dough.",
      "It releases carbon dioxide gas as it ferments.",
      "Gluten from kneaded flour forms a stretchy network that traps the gas.",
      "Heat in the oven expands the bubbles and sets the structure."],
     "Yeast produces carbon dioxide that gets trapped in a gluten network, and oven heat expands and sets the bubbles."),
    ("Why are coral reefs important?",
     ["Reefs cover a tiny share of the ocean but host about a quarter of marine species.",
      "They protect coastlines by breaking waves during storms.",
      "Fisheries and tourism built on reefs support millions of people.",
      "They are also a source of compounds used in medicine."],
     "They shelter a huge share of ocean life, protect coasts from storms, support fishing and tourism, and yield medicines."),
    ("How do noise-cancelling headphones work?",
     ["Microphones on the headphones pick up outside sound.",
      "A chip generates a sound wave that is the mirror image of that noise.",
      "When the two waves meet they cancel each other out.",
      "This works best for steady low sounds like engine hum."],
     "They record ambient noise and play an inverted copy, so the two waves cancel, which works best on steady low-frequency sounds."),
    ("What was the significance of the Magna Carta?",
     ["In 1215 rebel barons forced King John to accept limits on his power.",
      "It stated that the king was subject to the law.",
      "Most clauses dealt with feudal grievances of the time.",
      "Later generations treated it as a symbol of rights against arbitrary rule."],
     "It established that the monarch is bound by law, and became a lasting symbol of protection against arbitrary power."),
    ("Why do people procrastinate?",
     ["Procrastination is less about laziness than about managing feelings.",
      "Tasks that feel boring or threatening create discomfort.",
      "Putting them off brings short-term relief, which reinforces the habit.",
      "Breaking tasks into small steps reduces the discomfort."],
     "Mostly to escape the unpleasant feelings a task brings; the relief of delay reinforces the habit."),
    ("How do glaciers shape landscapes?",
     ["Glaciers are slow rivers of ice that carry rock frozen into their base.",
      "That rock scrapes and grinds the bedrock like sandpaper.",
      "Valleys carved by rivers become U-shaped under glaciers.",
      "When glaciers melt they leave ridges of debris called moraines."],
     "By grinding bedrock with trapped rock, carving U-shaped valleys, and leaving moraines of debris when they retreat."),
    ("What makes a city walkable?",
     ["Walkability depends on having destinations within a short distance.",
      "Continuous sidewalks and safe crossings matter as much as distance.",
      "Street trees and shop fronts make walking pleasant.",
      "Mixed land use keeps homes, shops and work close together."],
     "Nearby destinations, safe and continuous sidewalks, pleasant streets, and a mix of homes, shops and workplaces."),
    ("Why does ice float on water?",
     ["Most substances are denser as solids than as liquids.",
      "Water is an exception because of hydrogen bonding.",
      "When water freezes, molecules lock into an open hexagonal lattice.",
      "That lattice takes up more space, so ice is less dense than liquid water."],
     "Hydrogen bonds lock frozen water into an open lattice that is less dense than liquid water, so ice floats."),
    ("How did the Silk Road affect cultures along it?",
     ["The Silk Road was a network of routes rather than one road.",
      "Merchants carried silk, spices and paper across Asia.",
      "Religions such as Buddhism spread along the same routes.",
      "Technologies and diseases traveled too, for better and worse."],
     "It spread goods, religions, technologies and diseases between distant cultures, tying Asia and Europe together."),
    ("What are the benefits of learning a second language?",
     ["A second language opens doors to work and travel.",
      "Studies link bilingualism with better attention control.",
      "It lets people read and hear a culture in its own words.",
      "It may also delay the symptoms of dementia."],
     "Better job and travel prospects, sharper attention, deeper cultural understanding, and possibly later onset of dementia."),
    ("Why do we have leap years?",
     ["A year is the time Earth takes to orbit the Sun, about 365 and a quarter days.",
      "A calendar of exactly 365 days drifts against the seasons.",
      "Adding a day every four years corrects most of that drift.",
      "Skipping some century years fixes the small remaining error."],
     "Earth's orbit takes about a quarter day more than 365 days, so an extra day every four years keeps the calendar aligned with the seasons."),
    ("How do plants know which way is up?",
     ["Roots grow down and shoots grow up even in the dark.",
      "Special cells contain dense starch grains that settle with gravity.",
      "Their position tells the plant which way is down.",
      "The hormone auxin then redistributes and bends the growth."],
     "Dense starch grains settle in special cells to sense gravity, and the hormone auxin redirects growth accordingly."),
    ("What makes a story suspenseful?",
     ["Suspense comes from the reader caring about what happens.",
      "The reader needs to know what is at stake.",
      "Delaying the outcome stretches the tension.",
      "Giving the reader information the character lacks adds dread."],
     "A character we care about, clear stakes, a delayed outcome, and often the reader knowing a danger the character does not."),
    ("Why do some birds migrate?",
     ["Migration is costly and dangerous, so the benefit must be large.",
      "Northern summers offer long days and abundant insects for raising chicks.",
      "Winter there brings cold and scarce food.",
      "Moving south for winter lets birds use both seasons' advantages."],
     "To exploit rich summer breeding grounds in the north while escaping the cold and scarce food of winter."),
    ("How does compost turn into soil?",
     ["Compost is organic matter broken down by living things.",
      "Bacteria and fungi do most of the decomposition.",
      "They need air, moisture and a balance of greens and browns.",
      "Worms and insects shred material and speed the process."],
     "Microbes, aided by worms and insects, break down organic matter when given air, moisture and a mix of greens and browns."),
    ("What is the role of the jury in a trial?",
     ["In common law countries a jury decides questions of fact.",
      "The judge decides questions of law and instructs the jury.",
      "Jurors weigh the evidence and decide whether guilt is proven.",
      "The jury brings community judgment into the legal system."],
     "A jury weighs the evidence and decides the facts, such as guilt, while the judge rules on the law."),
    ("Why is biodiversity important?",
     ["Ecosystems with many species tend to be more stable.",
      "Different species fill different roles like pollination and decomposition.",
      "Genetic diversity helps populations adapt to disease and change.",
      "Many foods and medicines come from wild species."],
     "Diverse ecosystems are more stable, provide services like pollination, adapt better to change, and supply food and medicine."),
    ("How does a refrigerator keep food cold?",
     ["A refrigerator moves heat rather than creating cold.",
      "A refrigerant evaporates inside, absorbing heat from the food compartment.",
      "A compressor squeezes the gas, raising its temperature.",
      "Coils at the back release that heat into the room."],
     "It pumps heat out: refrigerant evaporates inside to absorb heat, then is compressed and releases that heat through coils outside."),
    ("What makes a team work well together?",
     ["Teams need a shared goal everyone understands.",
      "Members must feel safe to speak up and admit mistakes.",
      "Clear roles prevent duplicated or dropped work.",
      "Regular honest feedback keeps the team improving."],
     "A shared goal, psychological safety, clear roles and regular honest feedback."),
    ("Why do volcanoes erupt?",
     ["Deep underground, rock melts into magma.",
      "Magma is lighter than the surrounding rock, so it rises.",
      "Dissolved gases in the magma build pressure as it nears the surface.",
      "When the pressure exceeds the strength of the rock above, it erupts."],
     "Buoyant magma rises and its dissolved gases build pressure until they break through the overlying rock."),
    ("How do museums decide what to collect?",
     ["Museums have a mission that limits what fits their collection.",
      "Curators consider an object's significance and condition.",
      "Provenance matters: the object must be legally and ethically acquired.",
      "Storage space and care costs also shape decisions."],
     "By their mission, the object's significance and condition, clean provenance, and the cost of storing and caring for it."),
    ("Why do we dream?",
     ["Nobody knows for sure why we dream.",
      "One view is that dreams help process emotions.",
      "Another is that they are a side effect of memory consolidation.",
      "A third sees them as rehearsal for threatening situations."],
     "It is unsettled; leading ideas are that dreams process emotions, reflect memory consolidation, or rehearse threats."),
    ("How did writing first develop?",
     ["The earliest writing appeared in Mesopotamia around 3200 BCE.",
      "It began as tokens and pictures for keeping track of goods.",
      "Over time signs came to stand for sounds as well as things.",
      "Writing arose independently in Egypt, China and Mesoamerica too."],
     "It grew out of record-keeping in Mesopotamia, where pictures for goods gradually came to represent sounds, and arose independently elsewhere."),
    ("What is the purpose of a national park?",
     ["National parks protect landscapes and wildlife from development.",
      "They also preserve places of cultural or historical value.",
      "Visitors can enjoy and learn from nature there.",
      "Balancing access with protection is a constant challenge."],
     "To protect natural and cultural treasures for the future while letting people enjoy and learn from them."),
    ("Why do languages change over time?",
     ["Every generation speaks a little differently from the last.",
      "Contact with other languages brings new words.",
      "Sounds shift as speakers simplify pronunciation.",
      "New technology and ideas need new words."],
     "Through small shifts each generation makes, contact with other languages, pronunciation changes and the need for new words."),
    ("How can a small town attract young residents?",
     ["Young people look for jobs, housing and community.",
      "Remote work makes small towns viable for many careers.",
      "Affordable housing is a strong draw compared to cities.",
      "Cafes, events and good internet make a town feel alive."],
     "Offer affordable housing, fast internet for remote work, local jobs and a lively community life."),
]

CHINESE = [
    ("为什么秋天的天空看起来更高更蓝？",
     "秋天空气干燥，水汽和尘埃较少，所以光线散射更少。天空因此显得更蓝更高。",
     "因为秋季空气干燥清洁，散射减少，天空显得更高更蓝。"),
    ("如何养成早睡早起的习惯？",
     "首先需要固定作息时间。睡前减少使用手机。早上接触阳光可以调整生物钟。",
     "固定作息、睡前远离屏幕、早晨多晒太阳，逐步调整即可。"),
    ("茶文化在中国历史上有什么影响？",
     "茶在唐代开始普及。陆羽写了《茶经》。茶叶贸易连接了中国和世界。",
     "茶影响了礼仪、文学和贸易，是中国文化的重要组成部分。"),
]

MATH = [
    ("A library lends 48 books on Monday and 3 times as many on Tuesday. How many books does it lend on the two days in total?",
     "Tuesday is 3 times 48, which is 144. Adding Monday's 48 gives 192. Let me check: 144 + 48 = 192.",
     "192 books."),
    ("A recipe needs 250 grams of flour for 10 cookies. How much flour is needed for 35 cookies?",
     "Each cookie needs 250 / 10 = 25 grams. For 35 cookies that is 35 × 25 = 875 grams.",
     "875 grams of flour."),
    ("A cyclist rides 45 km in 1.5 hours. What is her average speed in km per hour?",
     "Average speed is distance divided by time. 45 / 1.5 = 30. So 30 km per hour.",
     "30 km/h."),
]

CODE = [
    ("Write a Python function that counts the vowels in a string.",
     "I need to loop over the characters and count those in the set of vowels. Lowercasing first handles capitals.",
     "```python\ndef count_vowels(text):\n    return sum(1 for ch in text.lower() if ch in \"aeiou\")\n```\nIt lowercases the text and counts characters that are vowels."),
    ("Write a Python function that returns the largest number in a list without using max().",
     "Start with the first element and compare each following element, keeping the larger. An empty list should raise an error.",
     "```python\ndef largest(values):\n    if not values:\n        raise ValueError(\"empty list\")\n    best = values[0]\n    for v in values[1:]:\n        if v > best:\n            best = v\n    return best\n```"),
    ("Write a Python function that reverses the words in a sentence.",
     "Split on whitespace, reverse the list, and join with single spaces.",
     "```python\ndef reverse_words(sentence):\n    return \" \".join(reversed(sentence.split()))\n```"),
]


def _trace(opening: str, facts: list[str], closing: str) -> str:
  return opening + " " + " ".join(facts[:2]) + "\n\n" + " ".join(facts[2:]) + "\n\n" + closing


def _topic(i: int):
  return TOPICS[i % len(TOPICS)]


def write_raiden() -> None:
  """Two CSV parts of 15 rows; edge cases at Part1 rows 3, 4, 6, 9 and Part2 rows 0, 3."""
  parts = [[], []]
  for part in range(2):
    for r in range(15):
      q, facts, ans = _topic(part * 15 + r)
      prompt = f"Write a short reflective essay answering this question: {q}"
      response = ("<think>\n" + _trace("Okay, the user wants a short essay on this.", facts,
                                       "So the essay should build up to one clear point.")
                  + "\n</think>\n\n" + ans + " " + facts[0])
      parts[part].append((prompt, response))
  p1, p2 = parts
  p1[3] = ('Write a scene where a chef, tired and "done with it all", argues with a critic.\n'
           'Keep it under 300 words, use dialogue, and end on a hopeful note.',
           p1[3][1])
  p1[4] = ("Three friends, Ana, Ben and Cleo, each own one pet: a cat, a dog or a parrot. "
           "Ana does not own the dog. Ben owns neither the dog nor the cat. Who owns which pet?",
           "<think>\nBen owns neither the dog nor the cat, so Ben owns the parrot. Then Ana and Cleo "
           "have the cat and the dog. Ana does not own the dog, so Ana owns the cat and Cleo owns "
           "the dog. Checking every clue: all hold, and no other assignment works.\n</think>\n\n"
           "Ana owns the cat, Ben owns the parrot, and Cleo owns the dog.")
  q, facts, _ = _topic(6)
  p1[6] = (f"Write a short reflective essay answering this question: {q}",
           "<think>\nOkay, the user wants an essay. " + " ".join(facts) + " Let me also think about")
  loop = "Wait, I should check that again before going further."
  q, facts, ans = _topic(9)
  p1[9] = (f"Write a short reflective essay answering this question: {q}",
           "<think>\n" + facts[0] + " " + " ".join([loop] * 44) + "\n</think>\n\nIt depends.")
  q, facts, ans = _topic(15)
  body = []
  i = 0
  while len(" ".join(body)) < 20500:
    f = TOPICS[i % len(TOPICS)][1]
    body.append(f"Consider another angle, number {i + 1}. " + " ".join(f))
    i += 1
  p2[0] = (f"Write a long, thorough essay answering this question: {q}",
           "<think>\n" + " ".join(body) + "\n</think>\n\n" + ans)
  p2[3] = (p2[3][0], p2[3][1].split("</think>")[0] + "</think>\n\n")
  for part, rows in zip((1, 2), parts):
    with open(os.path.join(HERE, "raiden", f"Raiden_DSR1_Part{part}.csv"), "w", newline="",
              encoding="utf-8") as f:
      w = csv.writer(f)
      w.writerow(["prompt", "response"])
      w.writerows(rows)


def write_openo1() -> None:
  """30 JSONL rows: Chinese 4/12/20, duplicates 6=19, no Output 7, whitespace 10, lowercase 14,
  math 1/8/15, code 3/11/18."""
  rows = []
  for r in range(30):
    q, facts, ans = _topic(r + 7)
    thought = _trace("Alright, I need to explain this clearly.", facts, "That covers the main points.")
    rows.append({"instruction": f"Explain in plain words for a general audience: {q}",
                 "output": f"<Thought>\n{thought}\n</Thought>\n<Output>\n{ans}\n</Output>"})
  for r, (q, t, a) in zip((4, 12, 20), CHINESE):
    rows[r] = {"instruction": q, "output": f"<Thought>\n{t}\n</Thought>\n<Output>\n{a}\n</Output>"}
  for r, (q, t, a) in zip((1, 8, 15), MATH):
    rows[r] = {"instruction": q, "output": f"<Thought>\n{t}\n</Thought>\n<Output>\n{a}\n</Output>"}
  for r, (q, t, a) in zip((3, 11, 18), CODE):
    rows[r] = {"instruction": q, "output": f"<Thought>\n{t}\n</Thought>\n<Output>\n{a}\n</Output>"}
  rows[19] = dict(rows[6])
  rows[7]["output"] = rows[7]["output"].split("<Output>")[0].rstrip() + "\n"
  q, facts, ans = _topic(17)
  rows[10] = {"instruction": f"Explain in plain words for a general audience: {q}",
              "output": f"<Thought>\n\n\n  \t{' '.join(facts)}  \n\n\t\n</Thought>\n<Output>\n\n"
                        f"   {ans}\t \n\n</Output>\n\n\n"}
  q, facts, ans = _topic(21)
  rows[14] = {"instruction": f"Explain in plain words for a general audience: {q}",
              "output": f"<thought>\n{' '.join(facts)}\n</thought>\n<output>\n{ans}\n</output>"}
  with open(os.path.join(HERE, "openo1", "OpenO1-SFT.jsonl"), "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_general_inquiry() -> None:
  """20 JSONL rows: row 5 reasoning without <think>, row 8 difficulty null, row 11 answer ""."""
  topics = ["Science", "History", "Psychology", "Society", "Nature"]
  rows = []
  for r in range(20):
    q, facts, ans = _topic(r + 3)
    reasoning = ("<think>\nTo answer this well, I first identified the core idea. "
                 + " ".join(facts) + "\nThus, the answer summarizes these points.\n</think>")
    answer = f"### Short answer\n{ans}\n\n### Details\n- " + "\n- ".join(facts[:3])
    rows.append({"question": q, "answer": answer,
                 "metadata": {"reasoning": reasoning, "difficulty": 1 + (r * 3) % 5,
                              "topic": topics[r % len(topics)]}})
  rows[5]["metadata"]["reasoning"] = rows[5]["metadata"]["reasoning"][len("<think>\n"):-len("\n</think>")]
  rows[8]["metadata"]["difficulty"] = None
  rows[11]["answer"] = ""
  with open(os.path.join(HERE, "general_inquiry", "train.jsonl"), "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_cot_collection() -> None:
  """One JSON object of 30 entries; 199448 empty rationale, 308593 empty target,
  403918 has the only non-ASCII char, 417564 is math."""
  ids = [str(104233 + 13636 * i + (i * 7) % 5) for i in range(30)]
  ids[7], ids[15], ids[22], ids[23] = "199448", "308593", "403918", "417564"
  tasks = ["anli_r1", "cos_e_v1.11", "qasc", "sciq", "esnli"]
  out = {}
  for i, key in enumerate(ids):
    q, facts, ans = _topic(i + 5)
    source = (f"{facts[0]} {facts[1]}\n\nBased on the paragraph above can we conclude that "
              f"\"{facts[2].rstrip('.')}\"?\n\nOPTIONS:\n- Yes\n- It's impossible to say\n- No")
    out[key] = {"source": source, "target": "It's impossible to say",
                "rationale": f"The paragraph says: {facts[0]} It does not mention the claim, so it cannot be concluded.",
                "task": tasks[i % len(tasks)], "type": "CoT"}
  out["199448"]["rationale"] = ""
  out["308593"]["target"] = ""
  out["403918"]["source"] = ("Mara opened a small café on the corner of Elm Street in the spring. "
                             "By autumn it had a line out the door every morning.\n\n"
                             "Question: Was the business successful?\nOPTIONS:\n- Yes\n- No")
  out["403918"]["target"] = "Yes"
  out["403918"]["rationale"] = "A line out the door every morning means many customers, which suggests success."
  out["417564"] = {"source": "Solve 5*x + 4 = 29 for x.", "target": "5",
                   "rationale": "Subtract 4 from both sides to get 5*x = 25. Divide by 5 to get x = 5.",
                   "task": "math_dataset_algebra__linear_1d", "type": "CoT"}
  with open(os.path.join(HERE, "cot_collection", "CoT_collection_en.json"), "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False, indent=2)


def write_glaive() -> None:
  """25 JSONL rows: row 4 no <think>, row 8 whitespace prompt, row 10 unclosed <think>,
  math 2/11, code 5 (Python) and 15 (JavaScript)."""
  rows = []
  for r in range(25):
    q, facts, ans = _topic(r + 13)
    trace = _trace("Okay, so I need to figure this out.", facts, "I think that covers it.")
    rows.append({"prompt": f"I have been wondering about this for a while. {q} What do experts say?", "response": f"<think>\n{trace}\n</think>\n\n{ans}"})
  rows[2] = {"prompt": "What is the sum of all even numbers from 2 to 50 inclusive?",
             "response": "<think>\nThe even numbers 2, 4, ..., 50 are 25 terms. Their sum is 25 × (2 + 50) / 2 = 650.\n</think>\n\nThe sum is 650."}
  rows[11] = {"prompt": "If a jacket costs $80 and is discounted by 25%, what is the sale price?",
              "response": "<think>\n25% of 80 is 20. 80 - 20 = 60.\n</think>\n\nThe sale price is $60."}
  rows[5] = {"prompt": "How do I write a Python function that checks if a number is prime?",
             "response": "<think>\nTrial division up to the square root is enough.\n</think>\n\n```python\ndef is_prime(n):\n    if n < 2:\n        return False\n    i = 2\n    while i * i <= n:\n        if n % i == 0:\n            return False\n        i += 1\n    return True\n```"}
  rows[15] = {"prompt": "How do I capitalize the first letter of a string in JavaScript?",
              "response": "<think>\nTake the first character, uppercase it, and append the rest.\n</think>\n\n```javascript\nconst capitalize = (s) => s.charAt(0).toUpperCase() + s.slice(1);\n```"}
  rows[4]["response"] = rows[4]["response"].split("</think>\n\n")[1]
  rows[8]["prompt"] = "   \n\t  \n"
  rows[10]["response"] = rows[10]["response"].split("\n</think>")[0]
  with open(os.path.join(HERE, "glaive", "train-00000-of-00001.jsonl"), "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
  for name in ("raiden", "openo1", "general_inquiry", "cot_collection", "glaive"):
    os.makedirs(os.path.join(HERE, name), exist_ok=True)
  write_raiden()
  write_openo1()
  write_general_inquiry()
  write_cot_collection()
  write_glaive()


if __name__ == "__main__":
  main()

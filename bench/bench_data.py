"""Data benchmark: prepare and loader throughput, packing efficiency. Prints one JSON line.

Synthetic rows in the real layouts, in the core mix's proportions (62.9K Raiden : 20K OpenO1 :
6K General_Inquiry : 10K CoT-Collection), with model-side lengths drawn from log-normals fitted
to REFERENCE.md (characters): Raiden median 9.8K, 1st pct 2.9K, 99th 37K (sigma 0.55);
OpenO1 median 4.1K; General_Inquiry median 3K; CoT-Collection rationale median 240, target 6
(no spread published for these three: sigma 0.5, 0.5, 0.6 assumed). Tokenized with the bundled
sample tokenizer. Packing is measured at seq 1024 and 2048, with and without the model-turn cap.
Usage: python bench/bench_data.py [--n 10000] [--pack_n 4000] [--workers 2]

`--langid N` instead compares the language identifiers (py3langid, lingua-language-detector
in its high and low accuracy modes) on N questions and N answers per language with the rows'
lengths (questions: log-normal, median 200 characters; answers: the core mix's shares of
Raiden/OpenO1/General_Inquiry answers and CoT-Collection targets), English built from the
sample topics' sentences and six Latin-script languages from hand-written sentences below;
the candidates run alternately, `--repeats` times, and the timings are medians.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time

import numpy as np
from py3langid import langid

from jax_sft.data import language, loader, prepare
from jax_sft.config import DataConfig, SourceConfig
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tools import sample_texts as samples  # noqa: E402  (the repo's dev tools)

# kind: (share of rows, median model-side chars, sigma of log chars)
MIX = {"raiden": (62.9 / 98.9, 9800, 0.55), "openo1": (20 / 98.9, 4100, 0.5),
       "general_inquiry": (6 / 98.9, 3000, 0.5), "cot_collection": (10 / 98.9, 240, 0.6)}
WORDS = np.array(sorted({w for _, facts, ans in samples.TOPICS
                         for w in re.findall(r"[a-z]+", " ".join(facts + [ans]).lower())}))
_CHARS_PER_WORD = float(np.mean([len(w) for w in WORDS])) + 1


def _text(rng, chars: int) -> str:
  """Random sentences of 6-17 words, about `chars` characters."""
  n = max(3, int(chars / _CHARS_PER_WORD))
  words = WORDS[rng.integers(0, len(WORDS), n)].tolist()
  ends = np.cumsum(rng.integers(6, 18, size=n // 6 + 2))
  starts = [0] + [int(e) for e in ends if e < n]
  for a in starts:
    words[a] = words[a].capitalize()
  for e in starts[1:] + [n]:
    words[e - 1] += "."
  return " ".join(words)


def _qid(rng) -> str:
  return "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=12))


def write_synthetic(root: str, n: int, seed: int = 0) -> dict[str, SourceConfig]:
  """Writes n rows split by MIX into the five layouts under root; returns source configs."""
  rng = np.random.default_rng(seed)
  srcs = {}
  for kind in MIX:
    k = max(1, int(n * MIX[kind][0]))
    os.makedirs(os.path.join(root, kind), exist_ok=True)
    share, median, sigma = MIX[kind]
    lens = np.clip(rng.lognormal(np.log(median), sigma, size=k), 60, 60000).astype(int)
    qs = [f"Question {_qid(rng)}: " + _text(rng, int(rng.lognormal(np.log(200), 0.6))) for _ in range(k)]
    if kind == "cot_collection":  # rationale + a short target (median 6 characters)
      traces = [_text(rng, int(l)) for l in lens]
      answers = [_text(rng, 6)[:max(1, int(rng.lognormal(np.log(6), 0.5)))] for _ in lens]
    else:
      traces = [_text(rng, int(l * 0.85)) for l in lens]
      answers = [_text(rng, min(1200, max(6, int(l * 0.15)))) for l in lens]
    path = os.path.join(root, kind)
    if kind == "raiden":
      with open(os.path.join(path, "part1.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "response"])
        w.writerows((q, f"<think>\n{t}\n</think>\n\n{a}") for q, t, a in zip(qs, traces, answers))
    elif kind == "cot_collection":
      with open(os.path.join(path, "cot.json"), "w") as f:
        json.dump({str(i): {"source": q, "rationale": t, "target": a, "task": "qa", "type": "CoT"}
                   for i, (q, t, a) in enumerate(zip(qs, traces, answers))}, f)
    else:
      with open(os.path.join(path, "rows.jsonl"), "w") as f:
        for q, t, a in zip(qs, traces, answers):
          row = {"openo1": {"instruction": q, "output": f"<Thought>\n{t}\n</Thought>\n<Output>\n{a}\n</Output>"},
                 "general_inquiry": {"question": q, "answer": a,
                                     "metadata": {"reasoning": f"<think>{t}</think>", "difficulty": 3}},
                 "glaive": {"prompt": q, "response": f"<think>\n{t}\n</think>\n\n{a}"}}[kind]
          f.write(json.dumps(row) + "\n")
    srcs[kind] = SourceConfig(kind=kind, path=path)
  return srcs


FOREIGN = {
    "es": "¿Por qué las hojas cambian de color en otoño? | Los árboles dejan de producir clorofila cuando los días se acortan. | "
          "Explica cómo funciona una bicicleta y por qué no se cae cuando está en movimiento. | "
          "La imprenta hizo que los libros fueran más baratos y que las ideas se difundieran más rápido. | "
          "Primero hay que entender qué pide la pregunta y luego revisar cada opción con calma. | "
          "El sueño profundo ayuda al cerebro a guardar los recuerdos del día. | "
          "¿Cuál es la mejor manera de pedir perdón a un amigo? | "
          "Una buena disculpa nombra el error, asume la responsabilidad y ofrece una reparación. | "
          "Escribe un poema corto sobre el mar en invierno. | Los volcanes se forman donde el magma sube a la superficie. | "
          "Vamos a pensar paso a paso antes de dar la respuesta final. | La respuesta correcta es la segunda opción.",
    "fr": "Pourquoi les feuilles changent-elles de couleur en automne ? | Les arbres cessent de produire de la chlorophylle quand les jours raccourcissent. | "
          "Explique comment un vélo reste debout lorsqu'il avance. | "
          "L'imprimerie a rendu les livres moins chers et a permis aux idées de circuler plus vite. | "
          "Il faut d'abord comprendre ce que demande la question, puis examiner chaque option. | "
          "Le sommeil profond aide le cerveau à consolider les souvenirs de la journée. | "
          "Quelle est la meilleure façon de présenter des excuses à un ami ? | "
          "De bonnes excuses nomment l'erreur, en assument la responsabilité et proposent une réparation. | "
          "Écris un court poème sur la mer en hiver. | Les volcans se forment là où le magma remonte vers la surface. | "
          "Réfléchissons étape par étape avant de donner la réponse finale. | La bonne réponse est la deuxième option.",
    "de": "Warum verfärben sich die Blätter im Herbst? | Die Bäume hören auf, Chlorophyll zu bilden, wenn die Tage kürzer werden. | "
          "Erkläre, warum ein Fahrrad nicht umfällt, solange es fährt. | "
          "Der Buchdruck machte Bücher billiger und half, neue Ideen schneller zu verbreiten. | "
          "Zuerst muss man verstehen, was die Frage verlangt, und dann jede Möglichkeit prüfen. | "
          "Im Tiefschlaf speichert das Gehirn die Erinnerungen des Tages. | "
          "Wie entschuldigt man sich am besten bei einem Freund? | "
          "Eine gute Entschuldigung benennt den Fehler, übernimmt Verantwortung und bietet Wiedergutmachung an. | "
          "Schreibe ein kurzes Gedicht über das Meer im Winter. | Vulkane entstehen dort, wo Magma an die Oberfläche steigt. | "
          "Lass uns Schritt für Schritt nachdenken, bevor wir antworten. | Die richtige Antwort ist die zweite Möglichkeit.",
    "pt": "Por que as folhas mudam de cor no outono? | As árvores deixam de produzir clorofila quando os dias ficam mais curtos. | "
          "Explique como uma bicicleta se mantém em pé enquanto anda. | "
          "A imprensa tornou os livros mais baratos e ajudou as ideias a circular mais depressa. | "
          "Primeiro é preciso entender o que a pergunta pede e depois analisar cada opção. | "
          "O sono profundo ajuda o cérebro a guardar as lembranças do dia. | "
          "Qual é a melhor forma de pedir desculpas a um amigo? | "
          "Um bom pedido de desculpas reconhece o erro, assume a responsabilidade e oferece uma reparação. | "
          "Escreva um poema curto sobre o mar no inverno. | Os vulcões se formam onde o magma sobe até a superfície. | "
          "Vamos pensar passo a passo antes de dar a resposta final. | A resposta correta é a segunda opção.",
    "it": "Perché le foglie cambiano colore in autunno? | Gli alberi smettono di produrre clorofilla quando le giornate si accorciano. | "
          "Spiega come fa una bicicletta a stare in piedi mentre si muove. | "
          "La stampa rese i libri più economici e aiutò le idee a diffondersi più in fretta. | "
          "Prima bisogna capire che cosa chiede la domanda e poi esaminare ogni opzione. | "
          "Il sonno profondo aiuta il cervello a conservare i ricordi della giornata. | "
          "Qual è il modo migliore per chiedere scusa a un amico? | "
          "Delle buone scuse nominano l'errore, se ne assumono la responsabilità e offrono un rimedio. | "
          "Scrivi una breve poesia sul mare d'inverno. | I vulcani si formano dove il magma risale verso la superficie. | "
          "Pensiamo passo dopo passo prima di dare la risposta finale. | La risposta giusta è la seconda opzione.",
    "nl": "Waarom verkleuren de bladeren in de herfst? | Bomen stoppen met het maken van bladgroen als de dagen korter worden. | "
          "Leg uit waarom een fiets niet omvalt zolang hij rijdt. | "
          "De boekdrukkunst maakte boeken goedkoper en liet ideeën sneller rondgaan. | "
          "Eerst moet je begrijpen wat de vraag vraagt en daarna elke mogelijkheid bekijken. | "
          "Diepe slaap helpt de hersenen om de herinneringen van de dag op te slaan. | "
          "Wat is de beste manier om je excuses aan te bieden aan een vriend? | "
          "Goede excuses noemen de fout, nemen verantwoordelijkheid en bieden herstel aan. | "
          "Schrijf een kort gedicht over de zee in de winter. | Vulkanen ontstaan waar magma naar de oppervlakte stijgt. | "
          "Laten we stap voor stap nadenken voordat we antwoorden. | Het juiste antwoord is de tweede mogelijkheid.",
}


def _langid_texts(n: int, seed: int = 0) -> dict[tuple[str, str], list[str]]:
  """{(language, "question" | "answer" | "sentence"): texts}: n questions and n answers with
  the rows' length distribution, and every single sentence as written (the short case)."""
  rng = np.random.default_rng(seed)
  pools = {lang: [x.strip() for x in text.split("|")] for lang, text in FOREIGN.items()}
  pools["en"] = [t for q, facts, a in samples.TOPICS for t in [q, a] + facts]
  shares = np.array([MIX[k][0] for k in MIX])
  out = {}
  for lang, pool in pools.items():
    for field in ("question", "answer"):
      texts = []
      for _ in range(n):
        if field == "question":
          length = int(rng.lognormal(np.log(200), 0.6))
        else:
          kind = list(MIX)[rng.choice(len(MIX), p=shares / shares.sum())]
          median = 6 if kind == "cot_collection" else 0.15 * MIX[kind][1]
          length = int(rng.lognormal(np.log(median), 0.5))
        words = []
        while len(" ".join(words)) < length:
          words += pool[rng.integers(len(pool))].split()
        text = " ".join(words)[:max(length, 1)]
        texts.append(text.rsplit(" ", 1)[0] if " " in text[:-1] else text)
      out[(lang, field)] = texts
    out[(lang, "sentence")] = pool
  return out


def _langid_candidates():
  """name -> (setup seconds, fn(text) -> (top language, its probability, P(English)))."""
  import lingua  # pylint: disable=g-import-not-at-top  (compared here only; not a dependency)

  out = {}
  t0 = time.perf_counter()
  ident = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
  ident.classify("warm up")

  def py3(text):
    lang, p = ident.classify(text)
    return lang, p, p if lang == "en" else None  # P(en) < 1 - p: not needed for the rules
  out["py3langid"] = (time.perf_counter() - t0, py3)
  for name, low in (("lingua_high", False), ("lingua_low", True)):
    t0 = time.perf_counter()
    b = lingua.LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models()
    det = (b.with_low_accuracy_mode() if low else b).build()

    def lin(text, det=det):
      values = det.compute_language_confidence_values(text)
      top = values[0]
      en = next(v.value for v in values if v.language == lingua.Language.ENGLISH)
      return top.language.iso_code_639_1.name.lower(), top.value, en
    lin("warm up")
    out[name] = (time.perf_counter() - t0, lin)
  return out


def langid_compare(n: int, repeats: int, max_chars: int, min_letters: int) -> dict:
  """Kept/dropped rates of each identifier and rule, and microseconds per text."""
  texts = {k: [language.judged_text(t, max_chars) for t in v] for k, v in _langid_texts(n).items()}
  judged = {k: [t for t in v if sum(c.isalpha() for c in t) >= min_letters] for k, v in texts.items()}
  cands = _langid_candidates()
  times = {name: [] for name in cands}
  results = {}
  for _ in range(repeats):
    for name, (_, fn) in cands.items():  # alternately, in one sitting
      t0 = time.perf_counter()
      results[name] = {k: [fn(t) for t in v] for k, v in judged.items()}
      times[name].append((time.perf_counter() - t0) / sum(len(v) for v in judged.values()))
  out = {"texts_per_language_and_field": n, "max_chars": max_chars, "min_letters": min_letters, "judged": {f"{l}/{f}": len(v) for (l, f), v in judged.items()}}
  for name, res in results.items():
    row = {"setup_s": round(cands[name][0], 1), "us_per_text": round(1e6 * statistics.median(times[name]), 1)}
    for t in (0.0, 0.5, 0.7, 0.9):
      for field in ("question", "answer", "sentence"):
        en = res[("en", field)]
        foreign = [r for (lang, f), v in res.items() if f == field and lang != "en" for r in v]
        keep = lambda r, t=t: r[0] == "en" and r[1] >= t  # rule: English, with probability >= t
        row[f"en_{field}_kept@{t}"] = round(sum(map(keep, en)) / max(1, len(en)), 4)
        row[f"foreign_{field}_dropped@{t}"] = round(1 - sum(map(keep, foreign)) / max(1, len(foreign)), 4)
    out[name] = row
  return out


def loader_stats(cfg: DataConfig, seq_len: int, batch: int = 8, max_batches: int = 400, epochs=1):
  """(real tokens/s, packing efficiency) over up to max_batches batches."""
  it = loader.make_iterator(cfg, "train", batch, seq_len, epochs=epochs)
  next(it)  # start-up (threads, file open) is not throughput
  real = total = 0
  t0 = time.perf_counter()
  for i, b in enumerate(it):
    real += int((b["segment_ids"] > 0).sum())
    total += b["segment_ids"].size
    if max_batches and i + 1 >= max_batches:
      break
  dt = time.perf_counter() - t0
  return real / dt, real / total


def packing_bound(cfg: DataConfig, seq_len: int) -> float:
  """An upper bound on packing efficiency for the prepared lengths, whatever the packer.

  No row holds k examples longer than seq_len / (k + 1), so rows >= count(len > seq/(k+1)) / k;
  the bound is real tokens / (seq_len * the largest such row count).
  """
  import grain  # pylint: disable=g-import-not-at-top
  from jax_sft.data import shards  # pylint: disable=g-import-not-at-top
  src = grain.sources.ArrayRecordDataSource(shards.shard_paths(cfg.output_dir, "train"))
  lens = np.array([len(shards.deserialize_tokens(src[i])[0]) - 1 for i in range(len(src))])  # shifted
  rows = max([np.ceil(lens.sum() / seq_len)] + [np.ceil((lens > seq_len / (k + 1)).sum() / k) for k in range(1, 16)])
  return float(lens.sum() / (rows * seq_len))


def _config(srcs, out: str, seq_len: int, cap: int, args) -> DataConfig:
  return DataConfig(sources=srcs, max_seq_len=seq_len, max_target_tokens=min(cap, seq_len),
                    long_policy="truncate", num_workers=args.workers, packing_bins=args.bins,
                    eval_fraction=0.0, output_dir=out)


def main() -> None:
  p = argparse.ArgumentParser()
  p.add_argument("--n", type=int, default=10000, help="rows for the prepare/loader throughput run")
  p.add_argument("--pack_n", type=int, default=4000, help="rows for each packing run (0 = skip)")
  p.add_argument("--workers", type=int, default=2)
  p.add_argument("--max_target_tokens", type=int, default=768)
  p.add_argument("--bins", type=int, default=DataConfig().packing_bins)
  p.add_argument("--langid", type=int, default=0, help="compare language identifiers on N texts each")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--min_letters", type=int, default=DataConfig().filters.language_min_letters)
  p.add_argument("--max_chars", type=int, default=DataConfig().filters.language_max_chars)
  args = p.parse_args()
  if args.langid:
    print(json.dumps(langid_compare(args.langid, args.repeats, args.max_chars, args.min_letters)))
    return
  out = {}
  with tempfile.TemporaryDirectory() as tmp:
    srcs = write_synthetic(os.path.join(tmp, "raw"), args.n)
    base = _config(srcs, os.path.join(tmp, "out"), 2048, args.max_target_tokens, args)
    t0 = time.perf_counter()
    r0 = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    m = prepare.prepare(base, force=True)
    dt = time.perf_counter() - t0
    # CPU seconds of the reading process and of the workers: less sensitive to a shared
    # machine's load than the wall time (the reading process is the serial part).
    cpu = [(b.ru_utime + b.ru_stime) - (a.ru_utime + a.ru_stime) for a, b in
           zip(r0, [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)])]
    read = sum(s["read"] for s in m["sources"].values())
    tps, _ = loader_stats(base, 2048)
    out.update({
        "n_rows": read, "kept": m["splits"]["train"]["examples"], "prepare_s": round(dt, 1),
        "prepare_examples_per_s": round(read / dt, 1),
        "prepare_tokens_per_s": round(m["splits"]["train"]["tokens"] / dt),
        "prepare_100k_est_s": round(dt * 100000 / read, 1),
        "prepare_cpu_main_s": round(cpu[0], 1), "prepare_cpu_workers_s": round(cpu[1], 1),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "truncated": sum(s["truncated"] for s in m["sources"].values()),
        "loader_tokens_per_s": round(tps)})
    if args.pack_n:
      psrcs = write_synthetic(os.path.join(tmp, "raw_pack"), args.pack_n, seed=1)
      for cap in (args.max_target_tokens, 0):
        for seq in (1024, 2048):
          cfg = _config(psrcs, os.path.join(tmp, f"pack{seq}_{cap}"), seq, cap or seq, args)
          pm = prepare.prepare(cfg, force=True)
          # Steady state, as in training (epochs repeat inside the packer): one epoch's worth
          # of tokens from a repeating stream, so the end-of-data flush of half-full bins is left out.
          _, eff = loader_stats(cfg, seq, max_batches=pm["splits"]["train"]["tokens"] // (8 * seq), epochs=None)
          turn = {k: v["model_turn_tokens"].get("p50") for k, v in pm["sources"].items()}
          out[f"packing_eff_{seq}_cap{cap or 'none'}"] = round(eff, 4)
          out[f"packing_bound_{seq}_cap{cap or 'none'}"] = round(packing_bound(cfg, seq), 4)
          out[f"model_turn_p50_{seq}_cap{cap or 'none'}"] = turn
  out.update({"workers": args.workers, "max_target_tokens": args.max_target_tokens, "packing_bins": args.bins,
              "tokenizer": "bundled sample (vocab 1024)"})
  print(json.dumps(out))


if __name__ == "__main__":
  main()

"""Built-in multilingual sample sentences for fidelity checks, and `--samples FILE` loading."""

from __future__ import annotations

from pathlib import Path

from modelyard.errors import SourceError

# Written for modelyard: short and long, several scripts, some negation and sentiment, so that
# classifiers and embedders both see varied inputs.
SAMPLES: tuple[str, ...] = (
    "The new release fixed the slow start, and the server now answers in milliseconds.",
    "I did not like this movie at all; the plot was thin and the ending made no sense.",
    "What a wonderful day to walk by the river with the dog!",
    "Please send the invoice for last month before Friday.",
    "The registry refused the upload because the digest did not match.",
    "Honestly, the food was cold and the waiter never came back.",
    "This book changed the way I think about cities and the people who build them.",
    "Is the train to Lyon running late again today?",
    "Our quarterly results beat expectations by a wide margin.",
    "The cat sat on the warm car hood and refused to move.",
    "Terrible support: three emails and still no answer.",
    "Absolutely love the new keyboard, typing feels effortless.",
    "hello",
    "ok",
    "Why does the model return the same label for every input?",
    "The weather forecast says heavy rain and strong wind for the whole weekend.",
    "Le service était lent, mais le repas était délicieux.",
    "Je ne recommande pas cet hôtel : la chambre était sale.",
    "Quelle belle surprise de vous voir ici ce soir !",
    "La réunion est reportée à mardi prochain à dix heures.",
    "Der Zug hatte wieder zwei Stunden Verspätung, unglaublich.",
    "Das neue Handy ist schnell, leicht und hat einen tollen Bildschirm.",
    "Ich habe das Paket nie erhalten und niemand antwortet mir.",
    "Morgen scheint die Sonne und wir gehen in den Bergen wandern.",
    "El concierto fue increíble, la banda tocó durante tres horas.",
    "No me gustó nada la película, es demasiado larga.",
    "¿Dónde está la estación de autobuses más cercana?",
    "La casa tiene un jardín pequeño y una cocina muy luminosa.",
    "Il gatto dorme sul divano tutto il pomeriggio.",
    "Questo ristorante è il migliore della città, davvero.",
    "O atendimento foi péssimo e o produto chegou quebrado.",
    "Adorei a viagem para o Porto, as pessoas são muito simpáticas.",
    "De vergadering duurde veel te lang en niemand was tevreden.",
    "Het weer is vandaag prachtig, laten we naar het strand gaan.",
    "Ten samochód jest bardzo szybki, ale pali za dużo.",
    "Obsługa klienta była miła i szybko rozwiązała problem.",
    "Этот фильм был очень скучным, я почти уснул.",
    "Спасибо за быструю доставку, всё пришло целым.",
    "Погода сегодня хорошая, пойдём гулять в парк.",
    "这家餐厅的菜很好吃，服务也很周到。",
    "我的快递已经三天没有更新了，真让人着急。",
    "今天天气很好，我们去公园散步吧。",
    "この映画はとても面白かったです。",
    "電車が遅れて会議に間に合いませんでした。",
    "배송이 빠르고 포장도 꼼꼼해서 만족합니다.",
    "هذا المنتج رائع وأنصح به بشدة.",
    "الخدمة كانت سيئة جدا ولن أعود مرة أخرى.",
    "यह फ़िल्म बहुत अच्छी थी, मुझे बहुत पसंद आई।",
    "Bu otelin odaları temiz ve personel çok yardımsever.",
    "Mixing languages: the café in München served the best croissant, vraiment parfait.",
    "A very long sentence that keeps going, listing servers, registries, layers, digests, "
    "manifests, tokenizers, embeddings, classifiers, quantization settings, latency figures, "
    "and cold start measurements, to make sure that long inputs are exercised as well as short "
    "ones in every fidelity check that modelyard runs.",
)


def load_samples(path: str | Path | None) -> list[str]:
    """The built-in samples, or the non-empty lines of `path` (UTF-8, one sample a line)."""
    if path is None:
        return list(SAMPLES)
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise SourceError(f"samples file not found: {file}") from exc
    except UnicodeDecodeError as exc:
        raise SourceError(f"samples file {file} is not UTF-8 text: {exc}") from exc
    samples = [line.strip() for line in lines if line.strip()]
    if not samples:
        raise SourceError(f"samples file {file} holds no sentences")
    return samples

"""Which language a message is in, so the guard knows when it cannot read it.

The guard's classifier and rules learned English: a Spanish or German emergency reads to them as an ordinary
question (or as an injection), so it would be answered as one. :class:`LanguageCheck` finds messages that are
clearly not in a supported language, and the guard answers those with a notice that leads with the emergency
numbers instead of answering unchecked.

Two independent detectors must agree that the message is not supported (short English questions fool either one
alone: "does hand sanitizer kill norovirus"): langdetect (a port of Google's language-detection, naive Bayes over
character n-grams, seeded so it is deterministic) and Lingua (n-gram models of 75 languages, low-accuracy mode:
~0.5 s to load, ~100 MB, instead of ~9 s and ~1 GB). When English is supported the message must also hold no
English function word ("how", "what", "you" ...; words other languages share, such as "de", "no" or "is", do not
count unless they open the message: "Is Rett syndrome fatal?"). Lingua runs only when langdetect already says
"not supported", so an English message costs at most one langdetect call. Both load on first use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, cached_property

from medtune.errors import UserError

#: Messages with fewer letters than this are too short to tell a language from (e.g. "ok?", "2 mg").
MIN_LETTERS = 8
#: Latin-script messages with fewer words than this are too short too ("explain hypothyroidism" reads as Latin).
MIN_LATIN_WORDS = 3
#: scikit-learn's English stop words that are also everyday words of other Latin-script languages ("de", "no",
#: "me", "un", "in", "is", "was", "also" ...): they are no evidence that a message is English.
_SHARED_FUNCTION_WORDS = frozenset([
    "a", "also", "am", "an", "are", "as", "co", "con", "de", "do", "due", "eg", "etc", "has", "he", "i", "ie", "in",
    "inc", "is", "ltd", "me", "mine", "no", "nor", "on", "or", "per", "re", "six", "so", "ten", "top", "un", "via",
    "was", "will",
])
#: Words that open an English question. Some are shared words above ("is", "are", "do", "has" ...), but as the
#: first word of a message they mark English ("Is Rett syndrome fatal?", which both detectors read as Italian).
_ENGLISH_OPENERS = frozenset([
    "are", "can", "could", "did", "do", "does", "has", "have", "how", "is", "should", "what", "when", "where",
    "which", "who", "why", "would",
])


@dataclass(frozen=True)
class LanguageVerdict:
    """The languages the two detectors read (ISO 639-1 codes; None when a detector saw no language)."""

    langdetect: str | None
    lingua: str | None


@cache
def _english_function_words() -> frozenset[str]:
    """English stop words (scikit-learn's list) that other Latin-script languages do not use as everyday words."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) - _SHARED_FUNCTION_WORDS


def language_name(code: str) -> str:
    """English name of an ISO 639-1 code ("es" -> "Spanish"); the code itself when Lingua does not know it."""
    try:
        from lingua import IsoCode639_1, Language

        return Language.from_iso_code_639_1(IsoCode639_1.from_str(code)).name.title()
    except (ImportError, ValueError):
        return code


class LanguageCheck:
    """Tell whether a message is in one of ``supported`` languages (ISO 639-1 codes, e.g. ``["en"]``)."""

    def __init__(self, supported: list[str]) -> None:
        self.supported = {code.lower() for code in supported}

    @cached_property
    def _langdetect(self):  # noqa: ANN202 - the langdetect module
        try:
            import langdetect
        except ImportError as exc:  # pragma: no cover - part of medtune[guard]
            raise UserError("the guard's language check needs langdetect: pip install 'medtune[guard]', "
                            "or set check_language: false in the guard config.") from exc
        langdetect.DetectorFactory.seed = 0
        return langdetect

    @cached_property
    def _lingua(self):  # noqa: ANN202 - a lingua.LanguageDetector
        try:
            from lingua import LanguageDetectorBuilder
        except ImportError as exc:  # pragma: no cover - part of medtune[guard]
            raise UserError("the guard's language check needs lingua-language-detector: pip install "
                            "'medtune[guard]', or set check_language: false in the guard config.") from exc
        return LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()

    def read(self, text: str) -> LanguageVerdict:
        """Both detectors' readings of ``text`` (Lingua only when langdetect reads an unsupported language)."""
        if len(re.findall(r"\w", text)) - len(re.findall(r"[\d_]", text)) < MIN_LETTERS:
            return LanguageVerdict(None, None)
        try:
            first = self._langdetect.detect(text)
        except self._langdetect.LangDetectException:   # no letters it knows
            first = None
        if first is None or first.split("-")[0] in self.supported:
            return LanguageVerdict(first, None)
        found = self._lingua.detect_language_of(text)
        return LanguageVerdict(first, found.iso_code_639_1.name.lower() if found else None)

    def unsupported_language(self, text: str) -> str | None:
        """The language of ``text`` when both detectors agree it is not a supported one, else None."""
        words = re.findall(r"\w+(?:'\w+)?", text.casefold())
        latin_only = not re.search(r"[^\W\d_\u0000-\u024f]", text)
        if latin_only and len(words) < MIN_LATIN_WORDS:
            return None
        if "en" in self.supported:
            content = [w for w in words if w not in ENGLISH_FILLERS]
            english = sum(w in _english_function_words() for w in content)
            if words[0] in _ENGLISH_OPENERS:
                return None
            if len(content) < MIN_LATIN_WORDS and latin_only:
                # mostly filler words ("Diagnose me please"): English, as before
                if any(word in _english_function_words() for word in words):
                    return None
            elif english >= ENGLISH_MIN_WORDS or english_share(text) >= ENGLISH_SHARE:
                return None
        # the detectors read the message without English filler words ("help please, mi abuela ..."): judged by
        # its content words, a code-switched message is in the other language.
        # read() asks Lingua only after langdetect found an unsupported language, so a Lingua reading means both
        # detectors ran; Lingua's is the one reported (the more accurate of the two on short texts)
        lingua = self.read(without_fillers(text) or text).lingua
        return None if lingua is None or lingua in self.supported else lingua


#: English words a non-native speaker adds to a message in their own language ("please", "help please", "sorry
#: my english"): no evidence that the message is English.
ENGLISH_FILLERS = frozenset([
    "please", "pls", "plz", "help", "sorry", "english", "bad", "my", "urgent", "quick", "quickly", "fast", "hello",
    "hi", "thanks", "thank", "ok", "okay", "emergency",
])
#: A message is English when at least this share of its words are English function words (fillers excluded), or
#: it opens with an English question word. Chosen on the validation set and the guard's English data (see
#: docs/guard.md, 2026-12-07): every English prompt there has more, a message with one filler word has none.
ENGLISH_SHARE = 0.12
#: ... or when it holds at least this many English function words besides the fillers ("Translate this from
#: German: '...'", a quoted foreign text inside an English request).
ENGLISH_MIN_WORDS = 2


def english_share(text: str) -> float:
    """The share of the words of ``text`` that are English function words, not counting the filler words a
    speaker of another language adds ("please", "help", "sorry my english")."""
    words = re.findall(r"\w+(?:'\w+)?", text.casefold())
    if not words:
        return 0.0
    english = _english_function_words()
    return sum(w in english and w not in ENGLISH_FILLERS for w in words) / len(words)


def without_fillers(text: str) -> str:
    """``text`` with the English filler words removed (what the language detectors read)."""
    kept = [w for w in re.split(r"(\s+)", text) if re.sub(r"\W", "", w.casefold()) not in ENGLISH_FILLERS]
    return re.sub(r"\s{2,}", " ", "".join(kept)).strip(" ,.!")


#: Emergency vocabulary of the languages whose emergency numbers the guard knows
#: (``templates.emergency_line_by_language``): language -> policy emergency kind -> pattern. Written from general
#: knowledge of each language (a current, personal red flag: "no responde", "ne respire plus", "dolore al petto").
FOREIGN_EMERGENCY: dict[str, dict[str, str]] = {
    "es": {
        "unresponsive": r"no (?:responde|reacciona|despierta)|inconsciente|se (?:ha )?desmay(?:ó|o|ado)|perdi(?:ó|o) "
                        r"el conocimiento",
        "breathing_anaphylaxis": r"no (?:puede |puedo )?respir\w*|le cuesta respirar|se (?:está )?ahog\w+|"
                                 r"(?:se pone|está|se está poniendo) (?:azul|morad\w)|labios azules|"
                                 r"(?:se le |se me )?cierra la garganta|garganta hinchada|anafila\w+|"
                                 r"se (?:le |me )?hincha(?:n)? (?:la cara|la lengua|los labios)",
        "cardiac": r"dolor (?:\w+ ){0,3}(?:en el|de|del) pecho|infarto|ataque al coraz[óo]n|presi[óo]n en el pecho",
        "stroke": r"cara (?:torcida|ca[íi]da)|no puede hablar|habla (?:arrastrada|rara)|derrame|ictus|"
                  r"no puede mover (?:el|la|los|las) \w+|parali[sz]ad\w+|par[áa]lisis",
        "poisoning_overdose": r"(?:tom[óoé]|trag[óoé]|se tom[óo]|ingiri[óo]|me tom[ée]) (?:\w+ )?(?:muchas|todas|"
                              r"un frasco|un bote|demasiad\w+|\d+)(?: \w+)? (?:pastillas|comprimidos|pildoras|"
                              r"píldoras|medicinas|medicamentos)|sobredosis|envenen\w+|"
                              r"(?:trag[óoé]|ingiri[óo]|se comi[óo]|bebi[óo]|se tom[óo]) (?:\w+ )?(?:pila|bater[íi]a|"
                              r"lej[íi]a|veneno|cloro)",
        "bleeding_trauma": r"sangr\w+ (?:mucho|much[íi]simo|sin parar)|no (?:para|deja) de sangrar|mucha sangre|"
                           r"hemorragia",
        "seizure": r"convulsi(?:ón|on|ones|ona|onando)|ataque epil[ée]ptico",
        "suicidal": r"quiero morir\w*|suicidarme|me quiero suicidar|matarme|quitarme la vida|"
                    r"no quiero (?:seguir )?vivir",
        "sepsis_meningitis": r"(?:cuello|nuca) r[íi]gid\w|rigidez (?:de|en la) nuca|manchas (?:moradas|violetas)",
    },
    "fr": {
        "unresponsive": r"ne r[ée]pond (?:plus|pas)|inconscient\w*|s'est [ée]vanoui\w*|ne se r[ée]veille pas",
        "breathing_anaphylaxis": r"ne respire (?:plus|pas)|n'arrive (?:plus|pas) [àa] respirer|respire mal|"
                                 r"(?:devient|est) (?:tout )?bleu\w*|s'[ée]touff\w+|gorge (?:gonfl\w+|serr\w+|qui "
                                 r"se ferme)|choc anaphylactique|(?:visage|langue|l[èe]vres) (?:gonfl\w+|enfl\w+)",
        "cardiac": r"douleur (?:\w+ ){0,3}(?:dans|à|a|de) la poitrine|douleur thoracique|crise cardiaque|infarctus|"
                   r"mal (?:à|a) la poitrine",
        "stroke": r"visage (?:paralys\w+|tomb\w+|d[ée]form\w+)|ne peut (?:plus )?parler|\bavc\b|paralysée?s?",
        "poisoning_overdose": r"a (?:aval[ée]|pris|bu) (?:\w+ )?(?:beaucoup de |trop de |tous? (?:ses|mes|les) |"
                              r"toute (?:la|une) |une )?(?:pile|comprim[ée]s|m[ée]dicaments|cachets|javel|poison|"
                              r"pilules)|surdose|fait une overdose|empoisonn\w+|intoxiqu\w+",
        "bleeding_trauma": r"saigne (?:beaucoup|abondamment|[ée]norm[ée]ment)|ne s'arr[êe]te pas de saigner|"
                           r"h[ée]morragie|beaucoup de sang",
        "seizure": r"fait des convulsions|en convulsions?|convulse|crise d'[ée]pilepsie",
        "suicidal": r"me suicider|envie de mourir|veux mourir|me tuer|veux plus vivre|veux pas vivre",
        "sepsis_meningitis": r"nuque raide|raideur (?:de la|dans la) nuque|taches (?:violettes|violacées)|purpura",
    },
    "de": {
        "unresponsive": r"reagiert nicht|bewusstlos|ohnm[äa]chtig|wacht nicht (?:mehr )?auf",
        "breathing_anaphylaxis": r"atmet nicht|bekommt keine luft|keine luft|kann nicht (?:mehr )?atmen|"
                                 r"erstick\w+|wird blau|hals (?:schwillt|ist zu|zugeschwollen)|anaphylaktisch\w*|"
                                 r"(?:zunge|lippen|gesicht) (?:schwillt|schwellen|geschwollen)",
        "cardiac": r"brustschmerz\w*|schmerzen in der brust|herzinfarkt|engegef[üu]hl in der brust",
        "stroke": r"gesicht\w* (?:h[äa]ngt|gel[äa]hmt)|gel[äa]hmte gesichtsh[äa]lfte|gel[äa]hmt|schlaganfall|"
                  r"kann nicht (?:mehr )?sprechen|spricht verwaschen",
        "poisoning_overdose": r"[üu]berdosis|vergift\w+|(?:viele|alle|zu viele) (?:tabletten|pillen|medikamente)|"
                              r"(?:batterie|knopfzelle|bleiche|gift|putzmittel) (?:\w+ )?(?:geschluckt|getrunken)",
        "bleeding_trauma": r"blutet (?:stark|sehr|viel)|h[öo]rt nicht auf zu bluten|viel blut",
        "seizure": r"krampfanfall|krampft|epileptische\w* anfall",
        "suicidal": r"mich umbringen|sterben will|will sterben|selbstmord|suizid\w*|will nicht mehr leben",
        "sepsis_meningitis": r"steife\w* nacken|nackensteif\w*|(?:lila|violette|dunkelrote) flecken",
    },
    "it": {
        "unresponsive": r"non risponde|svenut\w|incoscient\w|privo di sensi|non si sveglia",
        "breathing_anaphylaxis": r"non respira|non riesce a respirare|soffoca|diventa (?:blu|viola)|"
                                 r"gola (?:gonfia|si chiude)|anafila\w+|(?:lingua|labbra|faccia) (?:gonfi\w+)",
        "cardiac": r"dolore (?:\w+ ){0,3}al petto|infarto|attacco di cuore|dolore toracico",
        "stroke": r"\bictus\b|faccia storta|paralizzat\w|non riesce a parlare|bocca storta",
        "poisoning_overdose": r"(?:un'|in )overdose|avvelenat\w|ha (?:ingoiato|ingerito|preso|bevuto) (?:\w+ )?(?:una )?"
                              r"(?:batteria|pila|candeggina|veleno|molte|tutte|troppe)|(?:molte|tutte le|troppe) "
                              r"(?:pillole|pastiglie|compresse)",
        "bleeding_trauma": r"sanguina (?:molto|tanto)|non smette di sanguinare|emorragia|molto sangue",
        "seizure": r"convulsioni|crisi epilettica",
        "suicidal": r"voglio morire|suicidarmi|mi voglio suicidare|uccidermi|togliermi la vita|"
                    r"non voglio più vivere",
        "sepsis_meningitis": r"collo rigido|rigidit[àa] nucale|macchie (?:viola|violacee)",
    },
    "pt": {
        "unresponsive": r"n[ãa]o (?:est[áa] )?(?:responde\w*|acord\w+)|desmai\w+|inconsciente|desacordad\w",
        "breathing_anaphylaxis": r"n[ãa]o (?:consegue )?respira\w*|sufoca\w*|ficando (?:azul|roxo)|"
                                 r"l[áa]bios (?:est[ãa]o )?(?:roxos|azuis)|"
                                 r"garganta (?:inchada|fechando)|anafila\w+|(?:l[íi]ngua|l[áa]bios|rosto) inchad\w",
        "cardiac": r"dor (?:\w+ ){0,3}no peito|infarto|ataque card[íi]aco",
        "stroke": r"derrame|\bavc\b|rosto (?:torto|ca[íi]do)|n[ãa]o consegue falar|boca torta|paralisad\w",
        "poisoning_overdose": r"(?:teve|tomou) uma overdose|envenen\w+|engoliu|(?:tomou|bebeu) (?:\w+ )?(?:muitos|muitas|todos|todas|"
                             r"demais|um frasco)|(?:muitos|muitas) (?:comprimidos|rem[ée]dios|p[íi]lulas)",
        "bleeding_trauma": r"sangrando muito|n[ãa]o para de sangrar|hemorragia|muito sangue",
        "seizure": r"convuls[ãa]o|convulsionando|convuls[õo]es|ataque epil[ée]ptico",
        "suicidal": r"quero morrer|me suicidar|suicidar-me|me matar|n[ãa]o quero mais viver",
        "sepsis_meningitis": r"pesco[çc]o r[íi]gido|rigidez na nuca|manchas roxas",
    },
    "nl": {
        "unresponsive": r"reageert niet|bewusteloos|flauwgevallen|wordt niet wakker",
        "breathing_anaphylaxis": r"ademt niet|kan niet (?:meer )?ademen|krijgt geen lucht|stikt|wordt blauw|"
                                 r"keel (?:zwelt|zit dicht)|anafyla\w+",
        "cardiac": r"pijn op de borst|borstpijn|hartaanval|hartinfarct",
        "stroke": r"beroerte|gezicht hangt|kan niet (?:meer )?praten|verlamd",
        "poisoning_overdose": r"overdosis|vergiftig\w+|ingeslikt|(?:veel|alle) (?:pillen|tabletten)",
        "bleeding_trauma": r"bloedt (?:heel )?(?:erg|veel|hevig)|houdt niet op met bloeden|veel bloed",
        "seizure": r"stuip\w*|epileptische aanval",
        "suicidal": r"wil dood|zelfmoord|mezelf (?:van kant maken|doden)|wil niet meer leven",
        "sepsis_meningitis": r"stijve nek|paarse vlekken",
    },
}
_FOREIGN_RE = {code: {kind: re.compile(rf"(?<!\w)(?:{pattern})(?!\w)", re.IGNORECASE) for kind, pattern in kinds.items()}
               for code, kinds in FOREIGN_EMERGENCY.items()}
#: A foreign red flag counts only in a message whose English share is below this (not an English sentence that
#: quotes a foreign word).
FOREIGN_MAX_ENGLISH_SHARE = 0.15


@dataclass(frozen=True)
class ForeignEmergency:
    """A red flag in one of the languages of :data:`FOREIGN_EMERGENCY`."""

    language: str
    kind: str
    match: str


def foreign_emergency(text: str) -> ForeignEmergency | None:
    """The first red flag of another language's emergency vocabulary in a message that is not English."""
    if english_share(text) >= FOREIGN_MAX_ENGLISH_SHARE:
        return None
    for code, kinds in _FOREIGN_RE.items():
        for kind, pattern in kinds.items():
            if match := pattern.search(text):
                return ForeignEmergency(code, kind, match.group(0))
    return None

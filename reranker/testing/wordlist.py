"""The fixed word and piece lists that the synthetic test tokenizers are built from.

Nothing here is downloaded: the lists are small, written out by hand, and their order fixes the
token ids, so changing them changes every test model. Add words at the end only.
"""

from __future__ import annotations

__all__ = [
    "ENGLISH_WORDS",
    "SUFFIXES",
    "CHARACTERS",
    "NON_ASCII_CHARACTERS",
    "NON_ASCII_WORDS",
]

_WORDS = """
the of and to a in is it you that he was for on are with as his they be at one have this
from or had by not word but what some we can out other were all there when up use your how
said an each she which do their time if will way about many then them write would like so
these her long make thing see him two has look more day could go come did number sound no
most people my over know water than call first who may down side been now find any new work
part take get place made live where after back little only round man year came show every
good me give our under name very through just form sentence great think say help low line
differ turn cause much mean before move right boy old too same tell does set three want air
well also play small end put home read hand port large spell add even land here must big
high such follow act why ask men change went light kind off need house picture try us again
animal point mother world near build self earth father head stand own page should country
found answer school grow study still learn plant cover food sun four between state keep eye
never last let thought city tree cross farm hard start might story saw far sea draw left late
run while press close night real life few north open seem together next white children begin
got walk example ease paper group always music those both mark often letter until mile river
car feet care second book carry took science eat room friend began idea fish mountain stop
once base hear horse cut sure watch color face wood main enough plain girl usual young ready
above ever red list though feel talk bird soon body dog family direct pose leave song measure
door product black short numeral class wind question happen complete ship area half rock order
fire south problem piece told knew pass since top whole king space heard best hour better true
during hundred five remember step early hold west ground interest reach fast verb sing listen
six table travel less morning ten simple several vowel toward war lay against pattern slow
center love person money serve appear road map rain rule govern pull cold notice voice unit
power town fine certain fly fall lead cry dark machine note wait plan figure star box noun
field rest correct able pound done beauty drive stood contain front teach week final gave green
quick develop ocean warm free minute strong special mind behind clear tail produce fact street
inch multiply nothing course stay wheel full force blue object decide surface deep moon island
foot system busy test record boat common gold possible plane age dry wonder laugh thousand ago
ran check game shape yes hot miss brought heat snow tire bring distance fill east paint
language among capital france paris germany berlin europe london england largest population
search engine query document rank model neural network data train language computer health
doctor medicine disease heart blood energy solar wind electric battery price market stock bank
history ancient rome empire war peace law court music film art photo coffee tea bread cheese
recipe cook weather climate ocean planet mars moon galaxy light speed physics chemistry biology
cell gene protein virus vaccine symptom treatment pain sleep exercise diet sugar salt vitamin
""".split()

# Order-preserving de-duplication: a repeated word must not shift later ids.
ENGLISH_WORDS: tuple[str, ...] = tuple(dict.fromkeys(_WORDS))

SUFFIXES: tuple[str, ...] = (
    "s", "es", "ed", "d", "ing", "ning", "er", "ers", "est", "ly", "tion", "tions", "ness",
    "ment", "able", "ful", "less", "al", "ize", "ity", "ist", "ism", "ic", "ous", "ive", "y",
    "en", "n", "ion", "ies", "ial", "ical", "ative", "ant", "ance", "ence", "ure", "age",
    "ship", "hood", "ward", "wise", "logy", "graphy", "synth", "esis", "ph", "th", "ch", "sh",
    "re", "in", "an", "on", "at", "or", "ar", "ol", "il", "um", "us", "ia", "ex", "ax", "ox",
)  # fmt: skip

_ASCII_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"

CHARACTERS: tuple[str, ...] = tuple(
    "abcdefghijklmnopqrstuvwxyz" + "0123456789" + _ASCII_PUNCTUATION
)

# Accented Latin, German, Cyrillic and CJK characters: enough for mixed-script test inputs to
# tokenize into real pieces instead of one unknown token each.
NON_ASCII_CHARACTERS: tuple[str, ...] = tuple(
    "éèêàâçôûüöäßñ"
    "абвгдежзийклмнопрстуфхцчшщъыьэюя"
    "中文国北京上海语言人大学你好是的在我不了有和日本東"
    "«»“”‘’–—…€£¥"
)

# Whole non-English words, for the cased SentencePiece-style vocabulary.
NON_ASCII_WORDS: tuple[str, ...] = (
    "café", "über", "straße", "größe", "niño", "français", "école", "привет", "мир", "москва",
    "россия", "язык", "中文", "中国", "北京", "上海", "语言", "大学", "你好", "日本",
)  # fmt: skip

"""What the evaluation's callers say and what the (scripted) agent answers.

Each caller: a turn, a backchannel over the agent's answer, a second turn, a real interruption
over the agent's second answer, a noise-only turn (silence on a clean line), a last turn. Caller
voices are Kokoro's (``am_michael``, ``bf_emma``, ``bm_george``; the agent speaks ``af_heart``)
plus two recordings from ``models/audio`` (the real CMU ARCTIC a0009 and the default caller).
The Spanish caller (``em_alex``, the agent ``ef_dora``) is in :data:`SPANISH`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """One scripted caller. ``file:<name>`` in a line means the recording ``models/audio/<name>.wav``
    (its text is the ``.txt`` beside it)."""

    voice: str
    turn1: str
    backchannel: str
    turn2: str
    interruption: str
    turn3: str
    lang: str = "en-us"
    agent_voice: str = "af_heart"


ENGLISH = [
    Caller(
        "am_michael",
        "file:caller_leak",
        "Mm-hm.",
        "My name is John Smith and I live at forty two Oak Street.",
        "Wait, sorry, it is actually the bathroom sink, not the kitchen.",
        "Great, tomorrow morning works for me.",
    ),
    Caller(
        "bf_emma",
        "Hello, my water heater is making a loud banging noise. Can someone take a look?",
        "Okay.",
        "file:arctic_a0009",
        "Hold on, I have a question about the price.",
        "That sounds good, see you tomorrow then.",
    ),
    Caller(
        "bm_george",
        "Hi, the toilet upstairs keeps running all night. How soon can you come?",
        "Yeah.",
        "The house is at twelve Maple Avenue, the blue door.",
        "No, stop, that is the wrong address, it is Maple Court.",
        "Perfect, I will be home all afternoon.",
    ),
]

SPANISH = [
    Caller(
        "em_alex",
        "Hola, tengo una fuga de agua debajo del fregadero de la cocina. ¿Pueden venir hoy?",
        "Ajá.",
        "Me llamo Carlos García y vivo en la calle Olmo número doce.",
        "Espere, perdón, en realidad es el baño, no la cocina.",
        "Perfecto, mañana por la mañana me viene bien.",
        lang="es",
        agent_voice="ef_dora",
    ),
]

REPLIES_EN = [
    (
        "the pipe under my kitchen sink is leaking",
        "I am sorry to hear about the leak. Please turn off the small valve under the sink if you can reach it. "
        "One of our plumbers can come out this afternoon between two and five. "
        "Could I have your name and address please?",
    ),
    (
        "my water heater is making a loud banging noise",
        "That banging usually comes from sediment at the bottom of the tank. It is not dangerous right away, "
        "but it should be looked at soon. We have a technician free tomorrow morning. "
        "What is your name and the address of the house?",
    ),
    (
        "the toilet upstairs keeps running all night",
        "A running toilet is usually a worn flapper or a stuck fill valve. It wastes a lot of water, "
        "so we can send someone later today. Could you tell me the address please?",
    ),
    (
        "my name is john smith and i live at forty two oak street",
        "Thank you, John. I have forty two Oak Street in Springfield. Our plumber will call you thirty minutes "
        "before arriving, and the visit fee is forty nine dollars. Is there anything else you would like us to know?",
    ),
    (
        "he turned sharply and faced gregson across the table",
        "Sorry, I did not quite follow that. Our technician can still come tomorrow morning between eight and ten. "
        "The visit fee is forty nine dollars, and any repair is quoted before we start. Does that time work for you?",
    ),
    (
        "the house is at twelve maple avenue the blue door",
        "Thank you, twelve Maple Avenue with the blue door. Our plumber can be there between three and five today, "
        "and the visit fee is forty nine dollars. Will someone be home to let them in?",
    ),
    ("it is actually the bathroom sink not the kitchen", "No problem, I have noted the bathroom sink instead."),
    ("i have a question about the price", "Of course. The visit is forty nine dollars, and repairs are quoted first."),
    ("that is the wrong address it is maple court", "Thank you, I have changed it to Maple Court."),
    ("tomorrow morning works for me", "Wonderful, you are booked for tomorrow morning. Goodbye!"),
    ("that sounds good see you tomorrow then", "Great, see you tomorrow. Goodbye!"),
    ("i will be home all afternoon", "Perfect, we will see you this afternoon. Goodbye!"),
]

REPLIES_ES = [
    (
        "tengo una fuga de agua debajo del fregadero de la cocina",
        "Siento mucho lo de la fuga. Si puede, cierre la llave de paso que está debajo del fregadero. "
        "Uno de nuestros fontaneros puede ir esta tarde entre las dos y las cinco. ¿Me da su nombre y dirección?",
    ),
    (
        "me llamo carlos garcía y vivo en la calle olmo número doce",
        "Gracias, Carlos. Tengo la calle Olmo número doce. El fontanero le llamará media hora antes de llegar, "
        "y la visita cuesta cuarenta y nueve dólares. ¿Hay algo más que debamos saber?",
    ),
    ("en realidad es el baño no la cocina", "No hay problema, he anotado el baño en lugar de la cocina."),
    ("mañana por la mañana me viene bien", "Estupendo, queda reservado para mañana por la mañana. ¡Adiós!"),
]

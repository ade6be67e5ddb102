"""Regenerate the demonstration corpus in this folder: train.conll, dev.conll, test.conll.

    python assets/sample/make_sample.py            # rewrite the three files
    python assets/sample/make_sample.py --stats    # also print the statistics table for README.md
    python assets/sample/make_sample.py --out DIR  # write the files to DIR instead (tests use it)

Every sentence comes from a template written for this project, filled with names from the lists
below (mostly invented; some real places and institutions). Nothing is taken from an existing
corpus. The output is deterministic: the same seed and lists give the same bytes.

Annotation conventions follow CoNLL-2003: PER people, ORG organisations (companies, clubs,
agencies, parties, newspapers, institutes, museums), LOC places (including countries named as
national sports teams), MISC nationalities, languages, events, awards, products, historical
periods. Days and months are not entities. The POS and chunk columns are assigned by a small
lexicon and suffix rules: plausible, not gold.
"""
import random
import re
import sys
from collections import Counter
from pathlib import Path

SEED = 20240611
HERE = Path(__file__).resolve().parent
SPLITS = {"train": (400, "iob2"), "dev": (80, "iob1"), "test": (80, "iob2")}
DOCSTART = "-DOCSTART- -X- O O"

FEMALE = ["Anna", "Maria", "Aisha", "Olga", "Fatima", "Grace", "Ingrid", "Leila", "Elena", "Sofia",
          "Yuki", "Hannah", "Camille", "Agnes", "Ruth", "Isabel", "Mei", "Laura", "Nadia", "Priya",
          "Chloe", "Amara", "Helga", "Rosa", "Teresa", "Ayumi", "Freya", "Zainab"]
MALE = ["Lars", "Tomasz", "Kenji", "Pedro", "Henrik", "Mateo", "Samuel", "Dmitri", "Rafael",
        "Oliver", "Jonas", "Kwame", "Marcus", "Tariq", "Diego", "Viktor", "Emeka", "Felix",
        "Stefan", "Hugo", "Ibrahim", "Niko", "Paulo", "Rory", "Anton", "Kofi", "Matteo", "Sven"]
SURNAMES = ["Berg", "Okafor", "Lindqvist", "Moreau", "Castellano", "Novak", "Whitfield", "Tanaka",
            "Haddad", "Kowalski", "Brennan", "Sørensen", "Petrova", "Alvarez", "Mensah", "Fischer",
            "Oyelaran", "Delacroix", "Harrington", "Voss", "Ramírez", "Kaplan", "Strand",
            "Achterberg", "Quinlan", "Ivanova", "Marsh", "Bianchi", "Nakamura", "Osei", "Holloway",
            "Eriksen", "Vargas", "Lindgren", "Adeyemi", "Costa", "Reinholt", "Duarte", "Sato",
            "Keller", "Falk", "Moyo", "Ferreira", "Gallagher", "Halvorsen", "Jovanovic", "Kuznetsova",
            "Laine", "Mwangi", "Nilsson", "Pereira", "Rossi", "Szabo", "Toivonen", "Ueda", "Varga"]
# Multi-word surnames, so that PER spans of three tokens occur.
LONG_SURNAMES = ["van Rees", "de Almeida", "da Silva", "van der Meer", "El Amrani", "de la Torre"]

ORG = {
    "COMPANY": ["Halvorsen Group", "Brightwater Energy", "Northgate Bank", "Solvik Motors",
                "Pellucid Systems", "Atlas Freight", "Corvane Pharmaceuticals", "Meridian Foods",
                "Bluefin Telecom", "Ostrava Steel", "Tamsin Robotics", "Greyhaven Capital",
                "Lumen Biotech", "Vantor Mining", "Harbourline Shipping", "Quillon Software",
                "Redmere Breweries", "Sunacre Solar", "Delmar Insurance", "Fenwick Retail",
                "Orsino Textiles", "Carrow Media", "Kaldera Chemicals", "Norrland Paper",
                "Westbay Holdings", "Palisade Hotels", "Ironbridge Construction", "Avalor Foods"],
    "HOTEL": ["Palisade Hotels", "Harbourview Inns", "Solstice Resorts", "Alder Lodge Group"],
    "BANK": ["Northgate Bank", "Greyhaven Capital", "Westbay Holdings", "Stellan Securities",
             "Harrow Investment Bank"],
    "TECHCO": ["Tamsin Robotics", "Ironbridge Construction", "Pellucid Systems", "Ostrava Steel",
               "Kaldera Optics"],
    "PHARMA": ["Corvane Pharmaceuticals", "Lumen Biotech", "Veritas Therapeutics"],
    "FUNDER": ["Kessler Foundation", "Sato Foundation", "Lindgren Trust", "Coastal Research Council",
               "European Union", "World Bank"],
    "HEALTH": ["World Health Organization", "Red Cross", "Centre for Tropical Medicine",
               "Global Vaccine Alliance"],
    "AIRLINE": ["Kestrel Airlines", "Nordwind Air", "Aurelia Airways", "Sunline Air",
                "Pacifica Airlines"],
    "CLUB": ["Eastport Rovers", "Vallmar United", "Kingsbridge Athletic", "Sporting Lanzo",
             "Dynamo Orlova", "Harlow City", "Westfield Wanderers", "Olympique Sarrin",
             "Borussia Weiden", "Northshore Hawks", "Coastal Mariners", "Atletico Serrano",
             "Red Star Velden", "Port Alder Town"],
    "INST": ["University of Linden", "Halden Institute of Technology", "Royal Marine Laboratory",
             "Northern Space Observatory", "Institute for Climate Studies", "Kessler Foundation",
             "National Library of Vallmar", "Centre for Tropical Medicine", "University of Porto",
             "Aldgate Polytechnic", "Benthos Research Institute", "Sato Foundation"],
    "AGENCY": ["United Nations", "World Health Organization", "European Union", "Red Cross",
               "World Bank", "International Monetary Fund", "African Union",
               "International Labour Organization", "World Food Programme"],
    "ECON": ["European Central Bank", "International Monetary Fund", "European Commission",
             "Bank of Canada", "World Trade Organization", "Competition Authority"],
    "SPORTBODY": ["Nordic Football Association", "World Football Council",
                  "Pan-African Football Board", "Coastal Football League"],
    "SPACE": ["European Space Agency", "Nordic Space Agency", "Pacific Launch Authority"],
    "MEDIA": ["Daily Courier", "Evening Tribune", "Harbour Gazette", "Coastal Times",
              "Lindenfeld Post", "Morning Herald", "Sunday Ledger", "Weekly Observer"],
    "PARTY": ["Green Alliance", "Social Democratic Party", "Liberal Union", "National Reform Party",
              "Farmers' League", "Labour Party", "Christian People's Party"],
    "JOURNAL": ["Journal of Polar Research", "Annals of Marine Science", "Tropical Ecology Letters",
                "Review of Applied Genetics", "Bulletin of Arctic Studies"],
    "MUSEUM": ["National Maritime Museum", "Museum of Modern Glass", "Galleria Vittoria",
               "City Museum", "Museum of the Sea", "Rijksvaart Collection", "Old Mint Gallery"],
}
LOC = {
    "PORT": ["Lisbon", "Marseille", "Bergen", "Hamburg", "Porto", "Gdansk", "Dublin", "Glasgow",
             "Rotterdam", "Bilbao", "Valparaiso", "Lagos", "Mombasa", "Manila", "Accra",
             "Cape Town", "Hong Kong", "Tallinn", "Reykjavik", "Genoa", "Antwerp"],
    "CITY": ["Oslo", "Lisbon", "Nairobi", "Osaka", "Toronto", "Valparaiso", "Krakow", "Marseille",
             "Bergen", "Accra", "Hamburg", "Porto", "Seville", "Adelaide", "Montreal", "Gdansk",
             "Tbilisi", "Cairo", "Lima", "Hanoi", "Vienna", "Dublin", "Glasgow", "Rotterdam",
             "Turin", "Kyoto", "Bilbao", "Cape Town", "New Delhi", "Buenos Aires",
             "Rio de Janeiro", "San Sebastian", "Hong Kong", "Kuala Lumpur", "Salt Lake City",
             "Lagos", "Manila", "Reykjavik", "Tallinn", "Quito", "Mombasa", "Leipzig"],
    "COUNTRY": ["Norway", "Portugal", "Kenya", "Japan", "Canada", "Chile", "Poland", "France",
                "Ghana", "Germany", "Spain", "Australia", "Brazil", "Egypt", "Peru", "Vietnam",
                "Austria", "Ireland", "Scotland", "Netherlands", "Italy", "New Zealand",
                "South Africa", "Denmark", "Sri Lanka", "Costa Rica", "Uruguay", "Senegal",
                "Nigeria", "Mexico", "Finland", "Morocco", "Iceland", "Estonia", "Ecuador"],
    "TOWN": ["Lindenfeld", "Port Alder", "Vallmar", "Kingsbridge", "Eastport", "Sarrin", "Weiden",
             "Orlova", "Velden", "Brackwater", "Hollin Bay", "Santa Ilaria", "Kirkmoor"],
    "REGION": ["Patagonia", "Bavaria", "Andalusia", "Tuscany", "Siberia", "Catalonia", "Brittany",
               "Lapland", "Galicia", "Normandy", "Kerala", "Yucatan", "Anatolia",
               "Silesia", "Algarve"],
    # Places that take "the" in English; templates write the article themselves.
    "RIVER": ["Danube", "Rhine", "Amazon", "Tagus", "Vistula", "Elbe", "Douro", "Volga", "Mekong",
              "Zambezi"],
    "SEA": ["Baltic Sea", "North Sea", "Pacific", "Atlantic", "Red Sea", "Gulf of Finland",
            "Adriatic", "Aegean", "Caribbean"],
    "MOUNT": ["Andes", "Alps", "Carpathians", "Atlas Mountains", "Pyrenees", "Himalayas",
              "Dolomites", "Rockies"],
    "ISLAND": ["Zanzibar", "Madeira", "Skye", "Crete", "Gotland", "Lofoten", "Sardinia",
               "Tenerife", "Saaremaa"],
    "CONTINENT": ["Europe", "Asia", "Africa", "South America", "Scandinavia", "North America",
                  "Oceania"],
}
MISC = {
    "NAT": ["Norwegian", "Portuguese", "Kenyan", "Japanese", "Canadian", "Chilean", "Polish",
            "French", "Ghanaian", "German", "Spanish", "Australian", "Brazilian", "Egyptian",
            "Peruvian", "Italian", "Irish", "Dutch", "Scottish", "Swedish", "Mexican", "Nigerian",
            "Finnish", "Moroccan", "Icelandic", "Estonian", "Austrian", "Vietnamese"],
    "EVENT": ["Olympic Games", "Commonwealth Games", "Asian Games", "European Championships",
              "Nordic Championships", "World Championships", "Pan American Games"],
    "FOOTBALL": ["World Cup", "Champions League", "African Cup of Nations", "Copa Serrana",
                 "Coastal Cup", "Nordic League Cup"],
    "TENNIS": ["Coastal Open", "Vallmar Open", "Nordic Indoor Championships", "Sarrin Masters"],
    "CYCLING": ["Tour de France", "Tour of Lapland", "Coastal Classic", "Vuelta Serrana"],
    "SKI": ["Winter Olympics", "Alpine World Cup", "Holmen Ski Games"],
    "RACE": ["Lindenfeld Marathon", "Grand Prix of Vallmar", "Eastport Half Marathon",
             "Midnight Sun Run"],
    "FESTIVAL": ["Eurovision Song Contest", "Venice Film Festival", "Harbour Jazz Festival",
                 "Feast of San Telmo", "Midsummer Regatta", "Festival of Lights", "Carnival"],
    "LANG": ["English", "Swahili", "Portuguese", "Mandarin", "Arabic", "Basque", "French",
             "Finnish", "Spanish", "Polish", "Japanese", "Latin", "Icelandic", "Welsh"],
    "AWARD": ["Nobel Prize", "Booker Prize", "Golden Lion", "Pulitzer Prize", "Fields Medal",
              "Lindqvist Medal", "Ballon d'Or", "Prix Moreau"],
    "PRODUCT": ["Nimbus Pro", "Kestrel 400", "Orion Nine", "Solvik Terra", "Bluefin S5",
                "Pellucid Vault", "Aurora Max", "Tamsin Helper", "Meridian Crisp"],
    "CRAFT": ["Aurora 3", "Polaris", "Seabird", "Vega Explorer", "Heron 2", "Lumen One"],
    "ERA": ["Industrial Revolution", "Renaissance", "Reformation", "Bronze Age", "Great Depression",
            "Middle Ages", "Age of Sail", "Enlightenment"],
    "WAR": ["Second World War", "First World War", "Napoleonic Wars", "Hundred Years War",
            "Thirty Years War", "Cold War", "Crimean War"],
    "HIST": ["Roman", "Viking", "Byzantine", "Ottoman", "Celtic", "Phoenician", "Hanseatic",
             "Venetian", "Moorish"],
    "WORK": ["The Quiet Harbour", "Salt and Iron", "A Winter in Porto", "The Lighthouse Keeper",
             "Northern Lights", "The Long Road Home", "Letters from Lagos"],
}
LABEL_OF = {**{k: "ORG" for k in ORG}, **{k: "LOC" for k in LOC}, **{k: "MISC" for k in MISC},
            "PER": "PER", "PER_F": "PER", "PER_M": "PER", "SUR": "PER"}

# Templates, pre-tokenised. {TYPE} is an entity slot; {TYPE#k} names one entity that a later
# slot can repeat, and {SUR#k} is the surname of person k. Lower-case slots are not entities.
TEMPLATES = {
    "news": [
        "{PER#1} , the {NAT} foreign minister , arrived in {CITY} on {day} for two days of talks .",
        "Officials in {CITY} said talks with the {AGENCY} would resume next week .",
        "{SUR#1} told reporters that {COUNTRY} had no plans to raise taxes before the election .",
        "The {PARTY} won {num} of the {big} seats in the regional parliament , according to the {MEDIA} .",
        "Police in {CITY} arrested {numw} men after a protest outside the offices of {COMPANY} .",
        "{PER} , who leads the {PARTY} , called for an inquiry into the flooding in {REGION} .",
        "The {AGENCY} sent emergency supplies to {COUNTRY} after heavy rain cut off several villages .",
        "Prime Minister {PER} will visit {COUNTRY} and {COUNTRY} later this month .",
        "Speaking in {CITY} on {day} , {PER} said the {NAT} government would review the agreement .",
        "Thousands of people marched through central {CITY} on {day} to demand cleaner air .",
        "The {NAT} embassy in {CITY} was closed for the day as a precaution .",
        "{PER} resigned as mayor of {CITY} after {numw} years in office .",
        "A spokesman for the {AGENCY} declined to comment on the report in the {MEDIA} .",
        "Voters in {COUNTRY} go to the polls on {day} in an election seen as a test for {PER} .",
        "The court in {CITY} ruled that the ban on night flights was lawful .",
        "{PER} , a lawyer from {CITY} , has been named ambassador to {COUNTRY} .",
        "Relations between {COUNTRY} and {COUNTRY} have improved since the border deal was signed in {year} .",
        "The minister said {NAT} troops would remain in the area until the end of the year .",
        "Firefighters from {TOWN} and nearby villages fought the blaze for most of the night .",
        "The {NAT} and {NAT} leaders met on the sidelines of the {AGENCY} summit in {CITY} .",
        "The {MEDIA} reported that {PER} had been offered a seat on the board of {COMPANY} .",
        "Residents of {TOWN} were told to boil their drinking water until further notice .",
        "{PER_F} criticised the decision , saying it would hurt families across {REGION} .",
        "{PER_F} , whose {PARTY} holds the balance of power , said she would not back the budget .",
        "The {AGENCY} said more than {big} people had fled the fighting in the north of {COUNTRY} .",
        "Senator {PER_F} of the {PARTY} is expected to announce her candidacy in {CITY} on {day} .",
    ],
    "sport": [
        "{COUNTRY} beat {COUNTRY} {score} in a friendly in {CITY} on {day} .",
        "{CLUB} striker {PER_M} scored twice as his side won {score} away to {CLUB} .",
        "{PER_M} of {COUNTRY} won the men 's downhill at the {SKI} .",
        "The {NAT} runner {PER} finished third in the {RACE} , behind {PER} and {PER} .",
        "{CLUB} have signed the {NAT} defender {PER_M} on a three-year contract .",
        "{PER_F} retained her title at the {TENNIS} with a straight-sets win over {PER_F} .",
        "Coach {PER} said {CLUB} would need to improve quickly before the {FOOTBALL} .",
        "Rain delayed the start of the final day in {CITY} by almost two hours .",
        "{COUNTRY} will host the {EVENT} for the first time in {year} .",
        "{SUR#1} , who turned {age} last month , has now scored {num} goals for {CLUB} .",
        "The match between {CLUB} and {CLUB} ended goalless after {PER} missed a late penalty .",
        "{PER#1} , the {NAT} cyclist , took the leader 's jersey on the ninth stage of the {CYCLING} .",
        "{CLUB} manager {PER_M} was fined for comments he made about the referee .",
        "{PER} broke the course record by four seconds in {CITY} on {day} .",
        "Tickets for the {FOOTBALL} final in {CITY} sold out within an hour .",
        "{COUNTRY} captain {PER} was ruled out of the series with a knee injury .",
        "The home side led {score} at half-time but {CLUB} came back to win .",
        "{PER} and {PER} will meet in the semi-finals of the {TENNIS} on {day} .",
        "It was the first home defeat for {CLUB} since {month} .",
        "{NAT} swimmer {PER} set a national record in the {num} metres freestyle .",
        "The {SPORTBODY} opened an inquiry into the transfer of {PER} from {CLUB} to {CLUB} .",
        "{SUR#1} , the {NAT} goalkeeper , saved two penalties in the shoot-out .",
        "The {SPORTBODY} confirmed that {CITY} will stage the final of the {FOOTBALL} .",
        "{PER} became the youngest winner of the {RACE} , finishing two seconds ahead of {PER} .",
        "{CLUB} are {num} points clear at the top of the table after a {score} win over {CLUB} .",
    ],
    "business": [
        "Shares in {COMPANY} rose {pct} percent after the company raised its profit forecast .",
        "{COMPANY} said on {day} it would cut {big} jobs in {COUNTRY} over the next two years .",
        "{COMPANY} agreed to buy its smaller rival {COMPANY} for {money} million euros .",
        "Chief executive {PER} said demand in {REGION} had been stronger than expected .",
        "The {ECON} kept interest rates unchanged , as most analysts had predicted .",
        "{COMPANY} will open a new factory near {CITY} , creating about {big} jobs .",
        "Analysts at {BANK} expect sales of the {PRODUCT} to slow in the second half .",
        "The {NAT} economy grew by {pct} percent in the third quarter , official figures showed .",
        "{PER} , the founder of {COMPANY} , stepped down as chairman on {day} .",
        "{COMPANY} reported a net loss of {money} million dollars for the year .",
        "The merger would create the largest shipping group in {CONTINENT} , {PER} told the {MEDIA} .",
        "Unions at {COMPANY} called a strike at its plants in {CITY} and {CITY} .",
        "{COMPANY} launched the {PRODUCT} in {COUNTRY} last month at a price of {money} euros .",
        "Investors welcomed the news , and the {NAT} currency rose against the dollar .",
        "The {ECON} warned that inflation in {COUNTRY} could stay high until {year} .",
        "{COMPANY} has appointed {PER} , formerly of {COMPANY} , as its new finance director .",
        "Exports from {COUNTRY} to {COUNTRY} doubled in the first six months of the year .",
        "A spokeswoman for {COMPANY} said the recall affected about {big} customers in {CONTINENT} .",
        "The deal still needs approval from the {ECON} and from regulators in {COUNTRY} .",
        "{AIRLINE} carried a record {big} passengers in {month} , helped by new routes to {COUNTRY} .",
        "{PER_F} , who ran the {NAT} unit of {COMPANY} , will become its chief executive in {month} .",
        "The {ECON} fined {COMPANY} {money} million euros for sharing prices with competitors .",
        "{COMPANY} shares fell sharply in {CITY} after {PER} warned of weaker orders from {COUNTRY} .",
        "Profits at {COMPANY} were hit by higher energy costs and a strike at its {TOWN} plant .",
    ],
    "science": [
        "Researchers at the {INST} have found a new species of frog in the forests of {REGION} .",
        "The study , led by {PER} of the {INST} , was published in the {JOURNAL} .",
        "The {SPACE} plans to launch the {CRAFT} probe from {TOWN} in {year} .",
        "{PER_F} was awarded the {AWARD} for her work on antibiotic resistance .",
        "Scientists measured record temperatures at the surface of the {SEA} last summer .",
        "The telescope , built by {TECHCO} , will be installed high in the {MOUNT} .",
        "A team from the {INST} and the {INST} sequenced the genome of the plant .",
        "{PER} said the results could help farmers in {COUNTRY} cope with drought .",
        "The {SPACE} confirmed that the {CRAFT} satellite had reached its final orbit .",
        "Data from the {CRAFT} mission suggest that ice may lie beneath the surface .",
        "The findings were presented at a conference in {CITY} on {day} .",
        "Funding for the project came from the {FUNDER} and the {INST} .",
        "{PER} and colleagues tracked {num} whales as they migrated along the coast of {COUNTRY} .",
        "The vaccine trial , run by {PHARMA} , involved about {big} volunteers in {COUNTRY} and {COUNTRY} .",
        "Engineers at the {INST} built a robot that can sort plastic waste by colour .",
        "The mineral was first described by the {NAT} chemist {PER} in {oldyear} .",
        "Glaciers in the {MOUNT} have lost about a third of their volume since {year} , the report said .",
        "{SUR#1} 's team now hopes to repeat the experiment on a larger scale .",
        "A small earthquake shook parts of {REGION} early on {day} , but no damage was reported .",
        "The paper was written in {LANG} and later translated into {LANG} .",
        "According to {PER} , the {WORLDREGION} has warmed faster than anywhere else on the planet .",
        "{PER} , a biologist at the {INST} , has spent {numw} years studying seabirds in the {SEA} .",
        "The {HEALTH} said cases of the disease had fallen by half in {COUNTRY} since {year} .",
        "{PER_M} shared the {AWARD} with his former student {PER} .",
    ],
    "travel": [
        "{AIRLINE} will start direct flights from {CITY} to {CITY} in {month} .",
        "The old town of {CITY} is best explored on foot , early in the morning .",
        "Visitors to {COUNTRY} can now apply for a tourist visa online .",
        "The night train from {CITY} to {CITY} takes about eleven hours and stops in {TOWN} .",
        "Many travellers combine a week in {REGION} with a few days on the coast of {COUNTRY} .",
        "The {MUSEUM} in {CITY} is free on the first {day} of every month .",
        "Hikers in the {MOUNT} should carry warm clothing even in summer .",
        "The {FESTIVAL} draws about {big} visitors to {TOWN} every August .",
        "{PER} , who runs a small guesthouse in {TOWN} , says bookings are up this year .",
        "Ferries to {ISLAND} leave from the harbour every two hours .",
        "Street food in {CITY} is cheap , and the {NAT} dishes are worth trying .",
        "The hotel chain {HOTEL} is opening {numw} new hotels in {COUNTRY} next year .",
        "Most guides in {CITY} speak {LANG} as well as {LANG} .",
        "The road from {CITY} to the {MOUNT} is closed in winter .",
        "Cruise ships will no longer be allowed to dock in the centre of {PORT} , the council said .",
        "A guided tour of the {MUSEUM} costs {small} euros and lasts an hour .",
        "The {MEDIA} named {CITY} one of the best places to visit this year .",
        "From {CITY} it is a short bus ride to the beaches of {REGION} .",
        "The {FESTIVAL} fills every hotel in {CITY} , so book early .",
        "Travellers arriving at {CITY} airport reported long queues at passport control on {day} .",
        "{ISLAND} is quieter in {month} , when the {NAT} school holidays are over .",
        "Our guide , {PER_F} , grew up in {TOWN} and knows every path on {ISLAND} .",
        "Boats leave {PORT} each morning for the islands of the {SEA} .",
    ],
    "history": [
        "The castle was built in the twelfth century to guard the crossing over the {RIVER} .",
        "During the {ERA} , the port of {PORT} was one of the busiest in {CONTINENT} .",
        "{PER} led an expedition across the {MOUNT} in {oldyear} .",
        "The treaty signed in {CITY} in {oldyear} ended the war between {COUNTRY} and {COUNTRY} .",
        "The {NAT} explorer {PER} reached the mouth of the river in {oldyear} .",
        "Many of the letters , written in {LANG} , are now held by the {INST} .",
        "After the {WAR} , thousands of families left {REGION} for {CONTINENT} .",
        "The cathedral in {CITY} was badly damaged during the {WAR} and rebuilt in {year} .",
        "{PER} ruled the city for almost thirty years and is buried near {TOWN} .",
        "Archaeologists from the {INST} uncovered {HIST} pottery near {TOWN} .",
        "The {HIST} settlement at {TOWN} was abandoned around the ninth century .",
        "In {oldyear} , {PER} published the first {LANG} grammar .",
        "The railway reached {TOWN} in {oldyear} , and the town grew rapidly .",
        "The collection includes {HIST} coins found along the coast of {COUNTRY} .",
        "{PER} , a printer from {CITY} , is remembered for a pamphlet that attacked the king .",
        "The {ERA} opened new trade routes between {CONTINENT} and {CONTINENT} .",
        "Historians still debate why the {HIST} fleet withdrew from {REGION} .",
        "The old customs house now holds a small exhibition about the {ERA} .",
        "Records show that the bridge over the {RIVER} was rebuilt three times .",
        "The novel {WORK} by {PER} tells the story of a family in {CITY} during the {WAR} .",
        "{PER_F} wrote {WORK} while living in exile in {CITY} .",
        "{HIST} merchants traded salt and amber along the {RIVER} for centuries .",
    ],
}
# Sentences without any entity, by domain.
PLAIN = {
    "news": ["It was not immediately clear how many people had been injured .",
             "The meeting ended without an agreement .",
             "Turnout was lower than at the last election .",
             "Officials said the bridge would reopen within a month ."],
    "sport": ["Both teams struggled on a heavy pitch after hours of rain .",
              "The second half was much livelier .",
              "He said he was pleased with the result but expected a harder game next week ."],
    "business": ["Trading was thin ahead of the long weekend .",
                 "The company did not say how much it had paid .",
                 "Sales of electric bicycles rose by a quarter last year .",
                 "Oil prices fell for a third straight day on worries about weak demand ."],
    "science": ["The researchers plan to publish their full data next spring .",
                "Samples were kept frozen until they could be analysed .",
                "The results will be announced on {day} ."],
    "travel": ["Bring cash , because many small shops do not accept cards .",
               "The view from the top is worth the climb .",
               "Heavy snow closed several mountain roads overnight ."],
    "history": ["The walls were rebuilt with stone taken from the ruined abbey .",
                "Few written records survive from this period ."],
}
# Two entities of one type with nothing between them: the case where IOB1 needs a B- tag.
ADJACENT = {
    "news": ["The minister told {PER} {PER} would lead the delegation to {CITY} ."],
    "sport": ["Tickets for the {COUNTRY} {COUNTRY} qualifier in {CITY} sold out in minutes .",
              "The coach told {PER} {PER} would start in goal on {day} ."],
    "business": ["Analysts said the {COMPANY} {COMPANY} merger would face close scrutiny in {CONTINENT} ."],
    "science": ["Lead author {PER} told {PER} {PER} would present the results in {CITY} ."],
    "travel": ["{PER} , born in {TOWN} {COUNTRY} , now guides walking tours in {CITY} ."],
    "history": ["The first {LANG} {LANG} dictionary was printed in {CITY} in {oldyear} ."],
}
WORLDREGION = ["Arctic", "Antarctic", "Mediterranean", "Sahel"]  # LOC after "the"
LOC["WORLDREGION"] = WORLDREGION
LABEL_OF["WORLDREGION"] = "LOC"

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
NUMW = ["two", "three", "four", "five", "six", "seven", "eight", "ten", "twelve"]
SCORES = ["1-0", "2-0", "2-1", "3-1", "3-0", "4-2", "3-2", "4-1"]


def make_people(rng):
    people = []
    for first, gender in [(f, "F") for f in FEMALE] + [(m, "M") for m in MALE]:
        for _ in range(2):
            surname = rng.choice(LONG_SURNAMES) if rng.random() < 0.07 else rng.choice(SURNAMES)
            while gender == "M" and surname.endswith("ova"):
                surname = rng.choice(SURNAMES)
            people.append((f"{first} {surname}", surname, gender))
    rng.shuffle(people)
    return people


def split_pool(rng, items, held_out=0.2):
    """Shared items (all splits) and held-out ones (dev and test only), so test has unseen names."""
    items = list(items)
    rng.shuffle(items)
    n = max(1, round(len(items) * held_out)) if len(items) >= 5 else 0
    return items[n:], items[:n]


class Filler:
    def __init__(self, rng, pools, unseen_rate):
        self.rng, self.pools, self.unseen_rate = rng, pools, unseen_rate

    def pick(self, kind):
        shared, held = self.pools[kind]
        pool = held if held and self.rng.random() < self.unseen_rate else shared
        return self.rng.choice(pool)

    def person(self, gender=None):
        while True:
            p = self.pick("PER")
            if gender is None or p[2] == gender:
                return p

    def fill(self, template):
        """Return [(token, label or None, slot number, slot kind)] for one template."""
        out, named, used = [], {}, []
        for slot, token in enumerate(template.split()):
            m = re.fullmatch(r"\{(\w+?)(?:#(\d))?\}", token)
            if not m:
                out.append((token, None, slot, None))
                continue
            kind, ref = m.groups()
            if kind.islower():
                out.append((self.number(kind), None, slot, kind))
                continue
            is_person = kind in ("PER", "SUR", "PER_F", "PER_M")
            key = ("PER" if is_person else kind, ref)
            if ref and key in named:
                value = named[key]
            else:
                for _ in range(20):  # two slots of one kind in a sentence get different names
                    if is_person:
                        value = self.person({"PER_F": "F", "PER_M": "M"}.get(kind))
                    else:
                        value = self.pick(kind)
                    if value not in used:
                        break
                used.append(value)
                if ref:
                    named[key] = value
            text = (value[1] if kind == "SUR" else value[0]) if is_person else value
            for word in text.replace("'s", " 's").split():
                out.append((word, LABEL_OF[kind], slot, kind))
        return out

    def number(self, kind):
        rng = self.rng
        return {
            "day": lambda: rng.choice(DAYS),
            "month": lambda: rng.choice(MONTHS),
            "year": lambda: str(rng.randint(1962, 2023)),
            "oldyear": lambda: str(rng.randint(1412, 1905)),
            "num": lambda: str(rng.randint(3, 40)),
            "numw": lambda: rng.choice(NUMW),
            "big": lambda: rng.choice(["120", "350", "800", "1,200", "2,500", "4,000", "15,000"]),
            "pct": lambda: f"{rng.randint(1, 9)}.{rng.randint(0, 9)}",
            "money": lambda: str(rng.choice([45, 120, 300, 640, 900, 1500, 2300])),
            "small": lambda: str(rng.randint(6, 25)),
            "score": lambda: rng.choice(SCORES),
            "age": lambda: str(rng.randint(19, 38)),
        }[kind]()


# ---- POS and chunk columns: a lexicon for the closed classes, suffix rules for the rest ----
LEXICON = {}
for _tag, _words in {
    "DT": "the a an this that these those every each both no all some several",
    "IN": "in on at of from for with by after before during since until about into over across "
          "along through between behind against near outside beneath around than as because "
          "if while whether like within via",
    "TO": "to", "CC": "and but or", "MD": "will would could should can may",
    "PRP": "he she it they we i", "PRP$": "his her its their our", "WP$": "whose", "WP": "who",
    "WDT": "which", "WRB": "when why how where", "EX": "there",
    "RB": "not now later early rapidly quickly sharply still even also immediately almost much "
          "online overnight twice high once away back ago further longer",
    "VBD": "said was were had won told beat led took set broke sold fell rose grew made came "
           "went left ran wrote reached shook cut kept found built spent hit began fought fled "
           "marched ended doubled",
    "VBN": "been signed published awarded described held damaged rebuilt named closed abandoned "
           "remembered printed expected allowed fined taken affected ruled",
    "VBZ": "is has says hopes takes leaves costs lasts draws fills knows holds tells",
    "VBP": "are have go combine expect leave speak",
    "VB": "be raise demand resume comment announce review remain improve win visit host open "
          "slow cope publish repeat carry study start sort lie hurt book try stage become meet "
          "back lead face guard apply stay analysed present accept cut",
    "JJ": "new old small large smaller regional central nearby lawful heavy national third ninth "
          "first second straight net higher weaker official full warm short cheap quiet quieter "
          "late home cleaner long harder three-year straight-sets electric fresh weak frozen "
          "direct tourist clear unchanged worth many few written ruined goalless former chief "
          "own next last stronger top emergency rising final several further",
    "NNS": "talks taxes seats men offices villages supplies people troops years goals seconds "
           "points jobs euros dollars analysts sales figures plants passengers routes costs "
           "regulators competitors prices orders forests results farmers colleagues whales "
           "volunteers engineers glaciers cases visitors hours days travellers beaches hotels "
           "guides ships islands boats shops cards roads letters families coins merchants "
           "records centuries times walls minutes tours semi-finals metres bookings dishes "
           "holidays samples researchers cars rates seabirds worries sidelines polls",
    # Nouns that the suffix rules below would take for verbs, adverbs or plurals.
    "NN": "friendly flooding fighting meeting morning shipping funding trading walking series "
          "news species drinking business freestyle bus",
    "CD": "one two three four five six seven eight ten eleven twelve thirty million",
    "JJS": "best most largest busiest youngest", "RBR": "faster earlier", "RP": "off down out up",
    "POS": "'s",
}.items():
    for _w in _words.split():
        LEXICON.setdefault(_w, _tag)
LEXICON.update({
    "Prime": "NNP", "Minister": "NNP", "Senator": "NNP", "Coach": "NNP", "Chief": "JJ",
    "Lead": "JJ", "Many": "JJ", "Few": "JJ", "Most": "JJS", "Bring": "VB", "Speaking": "VBG",
    "According": "VBG", "Street": "NN", "Cruise": "NN", "Data": "NNS", "Police": "NNS",
    "ahead": "RB", "else": "RB", "anywhere": "RB", "well": "RB", "so": "RB", "without": "IN",
    "became": "VBD", "did": "VBD", "met": "VBD", "withdrew": "VBD", "fallen": "VBN",
    "paid": "VBN", "seen": "VBN", "born": "VBN", "run": "VBN", "guided": "VBN",
    "explored": "VBN", "buy": "VB", "create": "VB", "reopen": "VB", "say": "VB", "help": "VB",
    "launch": "VB", "dock": "VB", "boil": "VB", "do": "VBP", "suggest": "VBP", "show": "VBP",
    "survive": "VBP", "debate": "VBP", "needs": "VBZ", "leads": "VBZ", "stops": "VBZ",
    "runs": "VBZ", "includes": "VBZ", "larger": "JJR", "lower": "JJR", "livelier": "JJR",
    "more": "JJR", "foreign": "JJ", "free": "JJ", "twelfth": "JJ", "close": "JJ",
    "family": "NN", "spring": "NN", "clothing": "NN",
    "percent": "NN", "leader": "NN", "half": "NN", "quarter": "NN", "sea": "NN", "men": "NNS",
    "that": "IN", ",": ",", ".": ".", ":": ":",
})
# Word kinds whose entity tokens are adjectives in Penn terms ("the Norwegian minister").
ADJECTIVE_KINDS = {"NAT", "HIST"}
ENTITY_POS = {"of": "IN", "for": "IN", "the": "DT", "and": "CC", "de": "FW", "da": "FW",
              "la": "FW", "van": "FW", "der": "FW", "El": "FW", "'s": "POS"}
NOT_PLURAL = {"Aires", "Andes", "Athletics", "Glass", "Lagos", "Voss", "Buenos", "Saaremaa"}
AFTER_AUX = {"has", "have", "had", "was", "were", "been", "be", "is", "are"}


def pos_tag(tokens):
    """tokens: [(word, label, slot, kind)] -> Penn tags, good enough to look like CoNLL-2003's."""
    tags = []
    for i, (word, label, _, kind) in enumerate(tokens):
        prev = tokens[i - 1][0].lower() if i else ""
        lower = word.lower()
        if label:
            if word in ENTITY_POS:
                tag = ENTITY_POS[word]
            elif re.fullmatch(r"[\d.,]+", word):
                tag = "CD"
            elif kind in ADJECTIVE_KINDS:
                tag = "JJ"
            elif re.fullmatch(r"[A-Z]\w{3,}[^su]s", word) and word not in NOT_PLURAL:
                tag = "NNPS"
            else:
                tag = "NNP"
        elif re.fullmatch(r"\d[\d.,-]*", word):
            tag = "CD"
        elif word in DAYS or word in MONTHS:
            tag = "NNP"
        elif word in LEXICON or lower in LEXICON:
            tag = LEXICON.get(word) or LEXICON[lower]
        elif lower.endswith("ed"):
            tag = "VBD"
        elif lower.endswith("ing"):
            tag = "VBG" if prev not in ("the", "a", "of") else "NN"
        elif lower.endswith("ly"):
            tag = "RB"
        elif lower.endswith("s") and not lower.endswith("ss"):
            tag = "NNS"
        else:
            tag = "NN"
        if tag == "VBD" and prev in AFTER_AUX:
            tag = "VBN"
        elif tag in ("VBD", "VBN") and prev in ("to", "will", "would", "could", "should", "may"):
            tag = "VB"
        tags.append(tag)
    return tags


def chunk_tags(pos):
    """IOB2 chunk tags from POS runs: NP, VP, PP, ADVP, SBAR; punctuation and CC are O."""
    np_tags = {"DT", "JJ", "JJS", "JJR", "NN", "NNS", "NNP", "NNPS", "CD", "PRP", "PRP$", "FW",
               "POS", "EX", "WP", "WP$", "WDT"}
    vp_tags = {"VB", "VBD", "VBN", "VBZ", "VBP", "VBG", "MD", "TO", "RP"}
    out, prev = [], None
    for i, tag in enumerate(pos):
        following = pos[i + 1] if i + 1 < len(pos) else None
        if tag in np_tags:
            kind = "NP"
        elif tag == "TO":
            kind = "VP" if following == "VB" else "PP"
        elif tag in vp_tags:
            kind = "VP"
        elif tag == "IN":
            kind = "SBAR" if following in vp_tags or following in ("PRP", "EX") else "PP"
        elif tag in ("RB", "RBR", "WRB"):
            kind = "VP" if prev == "VP" and following in vp_tags else "ADVP"
        else:
            out.append("O")
            prev = None
            continue
        # A new noun phrase starts after a possessive and at a determiner after a noun.
        starts = kind != prev or kind in ("PP", "SBAR") or (
            kind == "NP" and (pos[i - 1] == "POS" or tag in ("DT", "PRP", "WP", "WDT")))
        out.append(("B-" if starts else "I-") + kind)
        prev = kind
    return out


def ner_tags(tokens, scheme):
    """tokens: [(word, label, slot, kind)] -> IOB1 or IOB2 tags."""
    tags = []
    for i, (_, label, slot, _) in enumerate(tokens):
        if not label:
            tags.append("O")
            continue
        prev_label, prev_slot = (tokens[i - 1][1], tokens[i - 1][2]) if i else (None, None)
        starts = prev_slot != slot
        if scheme == "iob2":
            tags.append(("B-" if starts else "I-") + label)
        else:  # IOB1: B- only where an entity directly follows one of the same type
            tags.append(("B-" if starts and prev_label == label else "I-") + label)
    return tags


def make_split(rng, filler, n_sents, adjacent_rate):
    """Documents of 7-14 sentences, each from one domain."""
    docs, remaining, domains = [], n_sents, []
    while remaining:
        if not domains:  # every domain once before any repeats, so each split has all six
            domains = rng.sample(list(TEMPLATES), len(TEMPLATES))
        domain = domains.pop()
        size = min(remaining, rng.randint(7, 14))
        templates = rng.sample(TEMPLATES[domain], size)
        plain = rng.sample(PLAIN[domain], len(PLAIN[domain]))
        for i in range(size):
            if plain and rng.random() < 0.09:
                templates[i] = plain.pop()
        if rng.random() < adjacent_rate:
            templates[rng.randrange(size)] = rng.choice(ADJACENT[domain])
        docs.append([filler.fill(t) for t in templates])
        remaining -= size
    return docs


def render(docs, scheme):
    lines = []
    for doc in docs:
        lines += [DOCSTART, ""]
        for sent in doc:
            pos = pos_tag(sent)
            for (word, *_), p, c, n in zip(sent, pos, chunk_tags(pos), ner_tags(sent, scheme)):
                lines.append(f"{word} {p} {c} {n}")
            lines.append("")
    return "\n".join(lines)


def stats(path):
    """(documents, sentences, tokens, entities per label), read back from a written file."""
    docs = sents = tokens = 0
    ents, prev = Counter(), "O"
    for block in path.read_text(encoding="utf-8").split("\n\n"):
        rows = [line.split() for line in block.split("\n") if line]
        if not rows:
            continue
        if rows[0][0] == "-DOCSTART-":
            docs += 1
            continue
        sents += 1
        tokens += len(rows)
        prev = "O"
        for row in rows:
            tag = row[-1]
            # An entity starts at B-, or at I- after O or after another label (IOB1).
            if tag != "O" and (tag[0] == "B" or prev == "O" or prev[2:] != tag[2:]):
                ents[tag[2:]] += 1
            prev = tag
    return docs, sents, tokens, ents


def main(argv):
    out_dir = Path(argv[argv.index("--out") + 1]) if "--out" in argv else HERE
    rng = random.Random(SEED)
    pools = {"PER": split_pool(rng, make_people(rng))}
    pools.update({kind: split_pool(rng, items) for kind, items in {**ORG, **LOC, **MISC}.items()})
    # (share of names drawn from the held-out pool, share of documents with an adjacent pair):
    # train never sees the held-out names; every dev document has an adjacent same-type pair.
    settings = {"train": (0.0, 0.35), "dev": (0.1, 1.0), "test": (0.25, 0.35)}
    for split, (n_sents, scheme) in SPLITS.items():
        unseen_rate, adjacent_rate = settings[split]
        docs = make_split(rng, Filler(rng, pools, unseen_rate), n_sents, adjacent_rate)
        (out_dir / f"{split}.conll").write_text(render(docs, scheme), encoding="utf-8")
    if "--stats" in argv:
        labels = ["PER", "ORG", "LOC", "MISC"]
        print("| split | tags | documents | sentences | tokens | " + " | ".join(labels)
              + " | all entities |")
        print("|---" * (6 + len(labels)) + "|")
        for split, (_, scheme) in SPLITS.items():
            docs, sents, tokens, ents = stats(out_dir / f"{split}.conll")
            print(f"| `{split}.conll` | {scheme.upper()} | {docs} | {sents} | {tokens:,} | "
                  + " | ".join(str(ents[label]) for label in labels)
                  + f" | {sum(ents.values()):,} |")


if __name__ == "__main__":
    main(sys.argv[1:])

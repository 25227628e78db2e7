package io.epserve.model.tokenizer;

/**
 * The training text of the demo tokenizer: plain English prose written for this project, so
 * that the first merges learned are real English pieces ("Ġthe", "ing", "Ġand") and demo
 * output tokenizes into recognisable words. Changing it changes the demo vocabulary, and with
 * it every demo token id; treat it as frozen.
 */
final class DemoCorpus {
    private DemoCorpus() {}

    static final String TEXT = """
            The harbour town woke slowly on the first cold morning of the year. Fishing boats rocked
            against the stone wall, and the gulls were already arguing over the nets that had been
            left out to dry. In the bakery at the corner of the market square, the lights had been on
            since four o'clock, and the smell of warm bread drifted down the narrow streets toward
            the water.

            Mara had worked in the bakery for eleven years. She knew every oven by its temper: the old
            brick one that ran hot on the left side, the steel one that needed a full hour to reach an
            even heat, and the small electric one that she used only for pastries. Each morning she
            weighed the flour, the water, the salt and the yeast, wrote the numbers in a notebook, and
            compared them with the numbers from the day before. When the weather turned damp, the
            dough needed less water; when the wind came from the north, it needed more time to rise.

            "You measure everything," her brother once said, watching her write. "Why not trust your
            hands?" She laughed and told him that her hands were good, but the notebook was better,
            because it remembered the mornings that her hands had forgotten.

            By seven the first customers arrived. The ferry captain bought two loaves of rye and a bag
            of rolls for his crew. A teacher from the school on the hill asked for twelve small cakes,
            one for each child who had finished reading a long book during the winter. An old man who
            lived above the hardware shop came in, as he did every day, for a single slice of apple
            pie and a cup of strong coffee, and he sat by the window to read the morning paper.

            The paper reported that the new railway line would open in the spring. Trains would run
            from the harbour to the city in less than two hours, stopping at seven stations along the
            river valley. Some people in the town were excited: the young could find work in the city
            and still come home in the evening, and visitors could come to walk along the cliffs and
            eat fresh fish by the sea. Others were worried that the quiet streets would fill with
            strangers, that prices would rise, and that the small shops would close one by one.

            Mara thought about the railway while she shaped the afternoon loaves. She imagined people
            stepping off the train, tired and hungry after the journey, looking for something warm.
            She imagined a second oven, a larger counter, perhaps a few tables by the window where the
            old man now sat alone. She also imagined the rent going up, and the long nights of work,
            and the risk of borrowing money that she might not be able to return.

            In the evening she walked to the end of the pier, as she often did when she had a problem
            to think through. The sea was calm and grey, and the lighthouse on the point had started to
            turn. She counted the seconds between the flashes: one, two, three, four, five, then light
            again. The rhythm had not changed since she was a child. Some things, she thought, should
            stay the same, so that everything else can change around them.

            The next morning she opened the notebook to a clean page and began to plan. She wrote down
            what a second oven would cost, how many loaves it could bake in a day, and how many of those
            loaves she would need to sell to pay for it within three years. She wrote the names of the
            suppliers who might give her better prices if she bought more flour at once. She wrote a
            list of questions for the bank, and another list of questions for herself: Do I want to
            work longer days? Can I train someone to help? What will happen if the trains are late, or
            empty, or never come at all?

            It took her a week to answer them. When she was done, she had a plan that was careful
            rather than bold: she would not borrow money yet. Instead she would start small, baking a
            new kind of bread each weekend and watching which ones sold out first. She would ask the
            teacher's students to paint a sign for the shop. She would talk to the ferry captain about
            selling sandwiches to the passengers, since the ferry would carry the travellers who came
            by train across to the islands.

            Spring came late that year. The first train arrived on a windy Tuesday, with flags on the
            platform and a band that played slightly out of tune. Forty-three passengers stepped down
            onto the new station, and by noon, twenty-one of them had found their way to the bakery.
            Mara sold every loaf before two o'clock and had to send her brother to the mill for more
            flour. That night she wrote the numbers in her notebook, and then, under them, in small
            letters, she wrote: a good day.

            Over the following months the town learned to live with the railway. The market grew on
            Saturdays, and a few new shops opened near the station: a bookshop, a bicycle repair shop,
            a small hotel with blue shutters. Some of the old families sold their houses and moved
            away; some of the young ones who had left came back. The gulls, as always, argued over the
            nets. The lighthouse kept its rhythm. And every morning, long before the first train, the
            lights came on in the bakery, and the smell of bread drifted down to the water.

            Questions for the reader: What would you measure, if you kept a notebook like Mara's? How
            would you decide when to take a risk, and when to wait? Which things in your own town
            should stay the same, and which should change? Write your answers in a few sentences, and
            compare them with a friend's answers next week.
            """;
}
